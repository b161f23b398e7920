# The learnpulse processes (worker, sinks + dashboard, gateway, simulator) for docker-compose.
# The dashboard's chart library (reporting/web/package.json) comes from npm, pinned by its lock file.
FROM node:20-slim AS charts
WORKDIR /charts
COPY reporting/web/package.json reporting/web/package-lock.json ./
RUN npm ci --no-audit --no-fund

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
COPY --from=charts /charts/node_modules /opt/learnpulse-charts/node_modules
# Inside a container the servers must listen beyond loopback; compose publishes only what it maps.
ENV LEARNPULSE_BIND_HOST=0.0.0.0 LEARNPULSE_HOME=/data LEARNPULSE_CHARTS_DIR=/opt/learnpulse-charts/node_modules
VOLUME /data
ENTRYPOINT ["learnpulse"]
