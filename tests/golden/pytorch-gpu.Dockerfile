# Rendered by mlbuild 0.1.0 for recipe "pytorch-gpu": pytorch 2.5.1, Python 3.12, CUDA 12.4, cuDNN 9.1.
# Do not edit by hand: change the recipe and run `mlbuild render` again.
# Classic-builder compatible (no BuildKit-only syntax), so any Docker engine builds it.
# mlbuild's own steps are exec-form RUN ["python", ...]: they need no shell in the base.
# Each stage builds as root (USER 0), whatever user the base image runs as; the image's own
# user comes last.

# ---- builder: everything that needs the network, the CA bundle or build tools -----------------
FROM python:3.12-slim-bookworm AS builder
# hadolint ignore=DL3002
USER 0
ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8
# Build-only settings (CA bundle, pip index): this stage only, never copied into the image.
COPY build-settings/ /tmp/mlbuild-build/
ENV PIP_CONFIG_FILE=/tmp/mlbuild-build/pip.conf PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN ["/usr/local/bin/python3.12", "-m", "venv", "--without-pip", "/opt/venv"]
# uv installs the environment: its settings and itself live in this stage only.
ENV UV_CONFIG_FILE=/tmp/mlbuild-build/uv.toml UV_NO_CACHE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
RUN ["/tmp/mlbuild-build/tools/uv", "pip", "install", "--python", "/opt/venv/bin/python", "--no-index", "--no-deps", "--compile-bytecode", "--find-links", "/tmp/mlbuild-build/tools", "pip==25.3"]
# The framework first, in its own step: extras change more often than it does.
COPY mlbuild/requirements-framework.txt mlbuild/constraints.txt mlbuild/layersplit.py /tmp/mlbuild/
RUN ["/opt/venv/bin/python", "/tmp/mlbuild/layersplit.py", "link", "/opt/venv", "/opt/mlbuild-layers", "torch,torchvision", "", "--", "/tmp/mlbuild-build/tools/uv", "pip", "install", "--python", "/opt/venv/bin/python", "--compile-bytecode", "-r", "/tmp/mlbuild/requirements-framework.txt"]
# The recipe's packages, in the order listed; the constraints keep the framework build exactly as
# resolved. One step each for the first ones: a package added at the end installs only itself.
COPY mlbuild/requirements-1.txt mlbuild/constraints.txt mlbuild/layersplit.py /tmp/mlbuild/
RUN ["/opt/venv/bin/python", "/tmp/mlbuild/layersplit.py", "link", "/opt/venv", "/opt/mlbuild-layers", "torch,torchvision", "transformers", "--", "/tmp/mlbuild-build/tools/uv", "pip", "install", "--python", "/opt/venv/bin/python", "--compile-bytecode", "-c", "/tmp/mlbuild/constraints.txt", "-r", "/tmp/mlbuild/requirements-1.txt"]
# What a derived image's pip may not replace (the framework, its companions, its CUDA build),
# written to /opt/mlbuild/constraints.txt; then the venv's layer slots completed: by
# distribution, stable ones first, times and owners normalised, so that a one-package change
# re-ships that package's layer, not the environment.
COPY mlbuild/imagesetup.py mlbuild/layersplit.py mlbuild/layers.json /tmp/mlbuild/
RUN ["/opt/venv/bin/python", "/tmp/mlbuild/layersplit.py", "/tmp/mlbuild/layers.json", "--", "/opt/venv/bin/python", "/tmp/mlbuild/imagesetup.py", "constraints", "/opt/mlbuild/constraints.txt", "torch", "torchvision"]

# ---- the image: the base, runtime OS packages, the virtual environment -----------------------
FROM python:3.12-slim-bookworm
USER 0
ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8
RUN apt-get update && apt-get install -y --no-install-recommends libgl1 ca-certificates && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb /var/log/apt /var/log/dpkg.log /var/log/alternatives.log /var/cache/debconf/*-old
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
RUN ["/opt/venv/bin/python", "/opt/mlbuild/imagesetup.py", "user", "mlbuild", "10001", "/home/mlbuild", "/workspace"]
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin PYTHONUNBUFFERED=1
# pip and uv in images built FROM this one keep to /opt/mlbuild/constraints.txt.
ENV PIP_CONSTRAINT=/opt/mlbuild/constraints.txt UV_CONSTRAINT=/opt/mlbuild/constraints.txt
ENV HF_HOME="/cache/hf"
WORKDIR /workspace
LABEL "org.mlbuild.spec"="{\"archs\":[\"sm_50\",\"sm_60\",\"sm_70\",\"sm_75\",\"sm_80\",\"sm_86\",\"sm_90\"],\"base_image\":\"python:3.12-slim-bookworm\",\"base_os\":\"debian-12\",\"base_site_packages\":[],\"base_suite\":\"bookworm\",\"build_packages\":[],\"companions\":[\"torchvision==0.20.1\"],\"cuda\":\"12.4\",\"cuda_arch_env\":\"\",\"cuda_arch_list\":\"\",\"cuda_match\":\"exact\",\"cudnn\":\"9.1\",\"devel_image\":null,\"distribution\":\"torch\",\"env\":[[\"HF_HOME\",\"/cache/hf\"]],\"files\":[],\"framework\":\"pytorch\",\"framework_from_base\":false,\"framework_requirement\":\"torch==2.5.1\",\"framework_version\":\"2.5.1\",\"import_name\":\"torch\",\"index_url\":null,\"library_dirs\":[\"jaxlib/**\",\"tensorflow\",\"torch/lib\"],\"matrix_version\":\"09e1b17a52a9\",\"min_driver\":\"525.60.13\",\"mlbuild_version\":\"0.1.0\",\"name\":\"pytorch-gpu\",\"packages\":[\"torch==2.5.1\",\"torchvision==0.20.1\",\"transformers==4.44.2\"],\"python\":\"3.12\",\"python_bin\":\"/usr/local/bin/python3.12\",\"python_from\":\"image\",\"reasons\":[\"pytorch 2.5.1: newest release matching '2.5'\",\"python 3.12: asked for in the recipe\",\"build: cu124 (asked for CUDA 12.4 that the gpu: fleet can run; CUDA 12.4, cuDNN 9.1; kernels for sm_50, sm_60, sm_70, sm_75, sm_80, sm_86, sm_90)\",\"index: the default index's torch 2.5.1 is the cu124 build\",\"base: python:3.12-slim-bookworm (default slim base for Python 3.12)\",\"driver: at least 525.60.13 (CUDA 12.x minor-version compatibility); 550.54.14 or newer runs CUDA 12.4 without it\"],\"repository\":\"mlbuild/pytorch-gpu\",\"requirements\":[\"transformers==4.44.2\"],\"schema\":1,\"shape\":\"runtime\",\"smoke_gpu\":\"auto\",\"smoke_run\":[],\"system_packages\":[\"libgl1\"],\"tags\":[],\"uid\":10001,\"user\":\"mlbuild\",\"uv_image\":null,\"variant\":\"cu124\",\"workdir\":\"/workspace\"}"
LABEL "org.opencontainers.image.description"="pytorch 2.5.1, Python 3.12, CUDA 12.4, cuDNN 9.1"
LABEL "org.opencontainers.image.title"="pytorch-gpu"
LABEL "org.opencontainers.image.version"="pytorch2.5.1-py3.12-cu124"
USER 10001
CMD ["python"]
