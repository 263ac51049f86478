# Rendered by mlbuild 0.1.0 for recipe "pytorch-devel": pytorch 2.5.1, Python 3.11, CUDA 12.4, cuDNN 9.1.
# Do not edit by hand: change the recipe and run `mlbuild render` again.
# Classic-builder compatible (no BuildKit-only syntax), so any Docker engine builds it.
# mlbuild's own steps are exec-form RUN ["python", ...]: they need no shell in the base.
# Each stage builds as root (USER 0), whatever user the base image runs as; the image's own
# user comes last.

# uv provides a standalone CPython where the base's OS ships another version.
FROM ghcr.io/astral-sh/uv:0.13.9 AS uv

# ---- devel: CUDA extensions compiled with nvcc into wheels; the compiler stays here ----------
FROM nvidia/cuda:12.4.1-cudnn-devel-ubuntu22.04 AS devel
# hadolint ignore=DL3002
USER 0
ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8
COPY build-settings/ /tmp/mlbuild-build/
ENV PIP_CONFIG_FILE=/tmp/mlbuild-build/pip.conf PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_PYTHON_INSTALL_DIR=/opt/python UV_PYTHON_PREFERENCE=only-managed
RUN ["/usr/local/bin/uv", "python", "install", "3.11"]
RUN ["/usr/local/bin/uv", "venv", "--seed", "--python", "3.11", "/opt/venv"]
COPY mlbuild/requirements-framework.txt mlbuild/constraints.txt /tmp/mlbuild/
RUN ["/opt/venv/bin/pip", "install", "-r", "/tmp/mlbuild/requirements-framework.txt"]
RUN ["/opt/venv/bin/pip", "install", "setuptools", "wheel", "ninja", "packaging"]
ENV TORCH_CUDA_ARCH_LIST="5.0;6.0;7.0;7.5;8.0;8.6;9.0" MAX_JOBS=4
COPY mlbuild/build-packages.txt /tmp/mlbuild/
RUN ["/opt/venv/bin/pip", "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", "/tmp/wheels", "-r", "/tmp/mlbuild/build-packages.txt"]

# ---- builder: everything that needs the network, the CA bundle or build tools -----------------
FROM nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04 AS builder
# hadolint ignore=DL3002
USER 0
ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8
# Build-only settings (CA bundle, pip index): this stage only, never copied into the image.
COPY build-settings/ /tmp/mlbuild-build/
ENV PIP_CONFIG_FILE=/tmp/mlbuild-build/pip.conf PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_PYTHON_INSTALL_DIR=/opt/python UV_PYTHON_PREFERENCE=only-managed
RUN ["/usr/local/bin/uv", "python", "install", "3.11"]
RUN ["/usr/local/bin/uv", "venv", "--seed", "--python", "3.11", "/opt/venv"]
# uv installs the environment: its settings and itself live in this stage only.
ENV UV_CONFIG_FILE=/tmp/mlbuild-build/uv.toml UV_NO_CACHE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
# The framework first, in its own step: extras change more often than it does.
COPY mlbuild/requirements-framework.txt mlbuild/constraints.txt mlbuild/layersplit.py /tmp/mlbuild/
RUN ["/opt/venv/bin/python", "/tmp/mlbuild/layersplit.py", "link", "/opt/venv", "/opt/mlbuild-layers", "torch,torchvision", "", "--", "/usr/local/bin/uv", "pip", "install", "--python", "/opt/venv/bin/python", "--compile-bytecode", "-r", "/tmp/mlbuild/requirements-framework.txt"]
# The extensions compiled in the devel stage, as wheels.
COPY --from=devel /tmp/wheels /tmp/wheels
COPY mlbuild/build-packages.txt mlbuild/constraints.txt mlbuild/layersplit.py /tmp/mlbuild/
RUN ["/opt/venv/bin/python", "/tmp/mlbuild/layersplit.py", "link", "/opt/venv", "/opt/mlbuild-layers", "torch,torchvision", "flash-attn", "--", "/usr/local/bin/uv", "pip", "install", "--python", "/opt/venv/bin/python", "--compile-bytecode", "--find-links", "/tmp/wheels", "-c", "/tmp/mlbuild/constraints.txt", "-r", "/tmp/mlbuild/build-packages.txt"]
# What a derived image's pip may not replace (the framework, its companions, its CUDA build),
# written to /opt/mlbuild/constraints.txt; then the venv's layer slots completed: by
# distribution, stable ones first, times and owners normalised, so that a one-package change
# re-ships that package's layer, not the environment.
COPY mlbuild/imagesetup.py mlbuild/layersplit.py mlbuild/layers.json /tmp/mlbuild/
RUN ["/opt/venv/bin/python", "/tmp/mlbuild/layersplit.py", "/tmp/mlbuild/layers.json", "--", "/opt/venv/bin/python", "/tmp/mlbuild/imagesetup.py", "constraints", "/opt/mlbuild/constraints.txt", "torch", "torchvision"]

# ---- the image: the base, runtime OS packages, the virtual environment -----------------------
FROM nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04
USER 0
ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8
COPY --from=builder /opt/python /opt/python
COPY --from=builder /opt/mlbuild-layers/01-venv/ /
COPY --from=builder /opt/mlbuild-layers/02-large-1/ /
COPY --from=builder /opt/mlbuild-layers/03-large-2/ /
COPY --from=builder /opt/mlbuild-layers/04-large-3/ /
COPY --from=builder /opt/mlbuild-layers/05-large-4/ /
COPY --from=builder /opt/mlbuild-layers/06-large-5/ /
COPY --from=builder /opt/mlbuild-layers/07-framework/ /
COPY --from=builder /opt/mlbuild-layers/08-deps/ /
COPY --from=builder /opt/mlbuild-layers/09-more/ /
COPY --from=builder /opt/mlbuild-layers/10-recipe-large-1/ /
COPY --from=builder /opt/mlbuild-layers/11-recipe-large-2/ /
COPY --from=builder /opt/mlbuild-layers/12-recipe/ /
COPY mlbuild/probe.py mlbuild/spec.json mlbuild/imagesetup.py /opt/mlbuild/
RUN ["/opt/venv/bin/python", "/opt/mlbuild/imagesetup.py", "user", "mlbuild", "10001", "/home/mlbuild"]
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin PYTHONUNBUFFERED=1
# pip and uv in images built FROM this one keep to /opt/mlbuild/constraints.txt.
ENV PIP_CONSTRAINT=/opt/mlbuild/constraints.txt UV_CONSTRAINT=/opt/mlbuild/constraints.txt
LABEL "org.mlbuild.spec"="{\"archs\":[\"sm_50\",\"sm_60\",\"sm_70\",\"sm_75\",\"sm_80\",\"sm_86\",\"sm_90\"],\"base_image\":\"nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04\",\"base_os\":\"ubuntu-22.04\",\"base_site_packages\":[],\"base_suite\":null,\"build_packages\":[\"flash-attn==2.7.4.post1\"],\"companions\":[\"torchvision==0.20.1\"],\"cuda\":\"12.4\",\"cuda_arch_env\":\"TORCH_CUDA_ARCH_LIST\",\"cuda_arch_list\":\"5.0;6.0;7.0;7.5;8.0;8.6;9.0\",\"cuda_match\":\"exact\",\"cudnn\":\"9.1\",\"devel_image\":\"nvidia/cuda:12.4.1-cudnn-devel-ubuntu22.04\",\"distribution\":\"torch\",\"env\":[],\"files\":[],\"framework\":\"pytorch\",\"framework_from_base\":false,\"framework_requirement\":\"torch==2.5.1\",\"framework_version\":\"2.5.1\",\"import_name\":\"torch\",\"index_url\":null,\"library_dirs\":[\"jaxlib/**\",\"tensorflow\",\"torch/lib\"],\"matrix_version\":\"09e1b17a52a9\",\"min_driver\":\"525.60.13\",\"mlbuild_version\":\"0.1.0\",\"name\":\"pytorch-devel\",\"packages\":[\"torch==2.5.1\",\"torchvision==0.20.1\"],\"python\":\"3.11\",\"python_bin\":\"/usr/local/bin/uv\",\"python_from\":\"standalone\",\"reasons\":[\"pytorch 2.5.1: newest release matching '2.5'\",\"python 3.11: asked for in the recipe\",\"build: cu124 (asked for CUDA 12.4; CUDA 12.4, cuDNN 9.1; kernels for sm_50, sm_60, sm_70, sm_75, sm_80, sm_86, sm_90)\",\"index: the default index's torch 2.5.1 is the cu124 build\",\"base: nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04 (NVIDIA CUDA 12.4.1 cuDNN 9 runtime, ubuntu-22.04)\",\"devel stage: nvidia/cuda:12.4.1-cudnn-devel-ubuntu22.04 (nvcc; compiled wheels are copied, the compiler is not)\",\"python 3.11: ubuntu-22.04 ships 3.10, so a standalone CPython from uv\",\"driver: at least 525.60.13 (CUDA 12.x minor-version compatibility); 550.54.14 or newer runs CUDA 12.4 without it\"],\"repository\":\"mlbuild/pytorch-devel\",\"requirements\":[],\"schema\":1,\"shape\":\"devel\",\"smoke_gpu\":\"auto\",\"smoke_run\":[],\"system_packages\":[],\"tags\":[],\"uid\":10001,\"user\":\"mlbuild\",\"uv_image\":\"ghcr.io/astral-sh/uv:0.13.9\",\"variant\":\"cu124\",\"workdir\":null}"
LABEL "org.opencontainers.image.description"="pytorch 2.5.1, Python 3.11, CUDA 12.4, cuDNN 9.1"
LABEL "org.opencontainers.image.title"="pytorch-devel"
LABEL "org.opencontainers.image.version"="pytorch2.5.1-py3.11-cu124"
USER 10001
CMD ["python"]
