# The learnpulse processes (worker, sinks + dashboard, gateway, simulator) for docker-compose.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas schemas
COPY producers producers
COPY streams streams
COPY sinks sinks
COPY reporting reporting
COPY learnpulse learnpulse
COPY deploy deploy
RUN pip install --no-cache-dir .
# Inside a container the servers must listen beyond loopback; compose publishes only what it maps.
ENV LEARNPULSE_BIND_HOST=0.0.0.0 LEARNPULSE_HOME=/data
VOLUME /data
ENTRYPOINT ["learnpulse"]
