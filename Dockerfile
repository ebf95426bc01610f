# The dashboard on port 8501, installed with the README's own steps (`make setup`).
#
# The image is meant to be served to other people, so it runs as a *shared server*
# (NEURONVIZ_SHARED_SERVER=1): no weight downloads, no models read from local paths, lower caps
# (neuronviz/infra/settings.py), uploads up to 100 MB, no tracebacks in the browser. It has no
# authentication of its own: put it behind one (docs/deployment.md). For a single-user run on
# your own machine: docker run -e NEURONVIZ_SHARED_SERVER=0 -e STREAMLIT_SERVER_MAX_UPLOAD_SIZE=200 ...
FROM python:3.11-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends make chromium \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /neuronviz
COPY requirements.txt requirements-nodeps.txt Makefile ./
RUN make setup
COPY . .

# Server settings come from .streamlit/config.toml (copied above); these override it for a
# shared server. Zoo weights live in $TORCH_HOME: mount a volume there to provide them.
ENV NEURONVIZ_SHARED_SERVER=1 \
    STREAMLIT_SERVER_MAX_UPLOAD_SIZE=100 \
    STREAMLIT_CLIENT_SHOW_ERROR_DETAILS=none \
    TORCH_HOME=/neuronviz/.torch

EXPOSE 8501
CMD [".venv/bin/python", "-m", "app.serve", \
     "--server.address", "0.0.0.0", "--server.port", "8501"]
