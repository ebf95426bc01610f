# The dashboard on port 8501, installed with the README's own steps (`make setup`).
FROM python:3.11-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends make chromium \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /neuronviz
COPY requirements.txt requirements-nodeps.txt Makefile ./
RUN make setup
COPY . .

EXPOSE 8501
CMD [".venv/bin/python", "-m", "streamlit", "run", "app/main.py", \
     "--server.address", "0.0.0.0", "--server.port", "8501", "--server.headless", "true", \
     "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none", \
     "--theme.base", "light", "--client.toolbarMode", "viewer"]
