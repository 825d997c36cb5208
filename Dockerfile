FROM python:3.11-slim
WORKDIR /app
COPY . /app
RUN pip install --no-cache-dir ".[all]" && mkdir -p /data
ENV P13N_EDGE_TEMPLATES_DIR=/app/templates
CMD ["p13n", "--help"]
