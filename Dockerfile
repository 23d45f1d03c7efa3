# The syncmesh image: one image, one role per container (see docker-compose.yml).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY generated ./generated
COPY services ./services
COPY gateway ./gateway
RUN pip install --no-cache-dir -c constraints.txt . \
 && useradd --system --home /var/lib/syncmesh syncmesh \
 && mkdir -p /var/lib/syncmesh && chown syncmesh /var/lib/syncmesh
USER syncmesh
ENV SYNCMESH_DATA_DIR=/var/lib/syncmesh \
    SYNCMESH_GRPC_HOST=0.0.0.0 \
    SYNCMESH_HTTP_HOST=0.0.0.0
EXPOSE 50051 8080
ENTRYPOINT ["syncmesh"]
CMD ["up"]
