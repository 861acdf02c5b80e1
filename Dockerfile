# The one image of onething: every api (python -m services.<service>.api), every worker
# (nameko run ...), the desk (python -m services.desk) and the broker topology job
# (python -m infra.topology) run from it. charts/onething deploys it.
#
#   docker build -t onething:0.1.0 .

# --- build: the dependencies in a virtual environment, the protobuf code generated into gen/ ------
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt

# what `make protos` does: google/type/date.proto comes with googleapis-common-protos and is copied
# beside ours for protoc; every folder of gen/ becomes a package except gen/ itself
COPY protos/ protos/
RUN mkdir -p protos/google/type gen \
 && cp "$(python -c 'import google.type.date_pb2 as d, os; print(os.path.dirname(d.__file__))')/date.proto" \
       protos/google/type/date.proto \
 && python -m grpc_tools.protoc -Iprotos --python_out=gen --grpc_python_out=gen --pyi_out=gen \
       $(find protos/onething -name '*.proto') \
 && find gen -type d -exec touch {}/__init__.py \; \
 && rm -f gen/__init__.py

# --- run: the environment, the generated code and the sources; a user that is not root ----------
FROM python:3.11-slim

RUN groupadd --system --gid 10001 onething \
 && useradd --system --uid 10001 --gid onething --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin onething \
 && mkdir -p /var/lib/onething \
 && chown onething:onething /var/lib/onething

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app:/app/gen \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ONETHING_PROFILE=production \
    ONETHING_VAR_DIR=/var/lib/onething \
    ONETHING_INFRA_DIR=/var/lib/onething

WORKDIR /app
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app/gen gen
COPY services/ services/
COPY infra/ infra/
COPY tools/ tools/

USER 10001:10001
# the chart sets each container's command; alone, the image serves the catalog api
CMD ["python", "-m", "services.catalog.api"]
