# syntax=docker/dockerfile:1

# --- build: compile TypeScript and the native SQLite module
FROM node:24-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev

# --- runtime: only what runs, as an unprivileged user
FROM node:24-slim
ENV NODE_ENV=production \
    STORE_URL=sqlite:/data/receiver.db \
    FILE_SINK_DIR=/data/results \
    PORT=3000 \
    ADMIN_PORT=9090 \
    SHUTDOWN_TIMEOUT_MS=7000
# The heap cap of `npm start`: V8 collects before the heap balloons (README, Memory).
# An environment variable, so `docker run -e NODE_OPTIONS=...` can change it.
ENV NODE_OPTIONS="--max-old-space-size=1024 --max-semi-space-size=8"
WORKDIR /app
# The code stays root's (readable, not writable, by node): a compromised service cannot
# rewrite what runs on its next start. Only /data is the service's own.
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
# For `node dist/cli.js replay examples/callback.json` inside the container.
COPY examples ./examples
RUN mkdir -p /data && chown node:node /data
# The image's node user by number (uid and gid 1000 in the official images): Kubernetes'
# runAsNonRoot cannot verify a user name and refuses the pod.
USER 1000:1000
VOLUME ["/data"]
# 3000: finAPI's callback (public). 9090: health, readiness, metrics, admin API.
EXPOSE 3000 9090
# The slim image has no curl; src/healthcheck.ts probes /healthz with Node's fetch, on
# ADMIN_HOST and ADMIN_PORT read as the service and its CLI read them.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["node", "dist/healthcheck.js"]
# SIGTERM (docker stop) drains running jobs within SHUTDOWN_TIMEOUT_MS (7 s here, the
# service's own default is 15 s); the process exits at most 2 s after that, inside
# docker's default 10 s stop timeout. Raise both together for longer drains.
STOPSIGNAL SIGTERM
CMD ["node", "dist/main.js"]
