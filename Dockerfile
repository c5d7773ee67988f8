# notifyd: master + one worker per retry tier + ingress worker (DESIGN §7).
#   docker build -t notifyd .
#   docker run --rm -e NOTIFY_AMQP_URL=amqp://guest:guest@rabbitmq:5672 \
#     -e NOTIFY_INGRESS_HOST=0.0.0.0 -e NOTIFY_INGRESS_TOKENS=billing:<32+ chars> -p 127.0.0.1:8080:8080 notifyd
#   (the ingress listens on loopback inside the container unless NOTIFY_INGRESS_HOST says otherwise, and
#    bound elsewhere it needs producer tokens; `docker stop -t 35` lets a drain finish)

ARG NODE_IMAGE=node:20-bookworm-slim

# ---- build: dev deps + tsc -> dist/ ------------------------------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: the root "prepare" script runs the build, and the sources
# are not copied yet (keeps this layer cached until the lockfile changes).
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY . .
RUN npm run build

# ---- runtime: production deps + dist/ + config/ + sql/ -----------------------
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    NOTIFY_INGRESS_PORT=8080 \
    NOTIFY_ADMIN_PORT=9464
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY config ./config
# Migrations and queries, read at run time (src/db/sql.ts) whenever a database is configured.
COPY sql ./sql
USER node
# 8080: ingress (POST /v1/notifications) and 9464: admin + /metrics are both
# loopback by default. To publish them set NOTIFY_INGRESS_HOST=0.0.0.0 with
# NOTIFY_INGRESS_TOKENS=name:token,…, and NOTIFY_ADMIN_HOST=0.0.0.0 with
# NOTIFY_ADMIN_TOKEN (start-up exits 78 without them).
EXPOSE 8080 9464
# The master drains on SIGTERM (supervisor.drainTimeout, 25 s): give
# `docker stop` a longer timeout (`-t 35` / compose stop_grace_period: 35s).
STOPSIGNAL SIGTERM
# The process is up (/healthz; /readyz also needs the broker and every tier), asked on loopback inside the
# container (admin.host loopback or 0.0.0.0), with the admin token when there is one. No curl in the slim image.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.NOTIFY_ADMIN_PORT||9464)+'/healthz',{headers:process.env.NOTIFY_ADMIN_TOKEN?{authorization:'Bearer '+process.env.NOTIFY_ADMIN_TOKEN}:{}}).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
CMD ["node", "dist/src/cli.js", "start"]
