# PostgreSQL 15 with pg_stat_guard (built here from pg_extension/) and pgsql-http from the
# PostgreSQL project's apt repository, which the official image already has configured.
# Build context: the repository root.
ARG PG_MAJOR=15

FROM postgres:${PG_MAJOR}-bookworm AS build
ARG PG_MAJOR
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        build-essential "postgresql-server-dev-${PG_MAJOR}" libcurl4-openssl-dev \
    && rm -rf /var/lib/apt/lists/*
COPY pg_extension/ /src/pg_extension/
WORKDIR /src/pg_extension
RUN make clean && make && make install DESTDIR=/out

FROM postgres:${PG_MAJOR}-bookworm
ARG PG_MAJOR
RUN apt-get update \
    && apt-get install -y --no-install-recommends "postgresql-${PG_MAJOR}-http" libcurl4 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/ /
# First start only: CREATE EXTENSION, and the function key into postgresql.auto.conf.
COPY deploy/postgres/initdb/ /docker-entrypoint-initdb.d/
