# Multi-stage: wheels are built in a throwaway stage; the runtime image has no compiler and
# runs as an unprivileged user. The wheel carries everything, migrations included, so the
# runtime stage copies no source. The dependencies are exactly requirements/main.txt, each
# download checked against the lock's hashes.
FROM python:3.11-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY requirements ./requirements
RUN pip wheel --no-cache-dir --require-hashes --no-deps --wheel-dir /wheels -r requirements/main.txt
COPY pyproject.toml README.md ./
COPY app ./app
COPY workers ./workers
COPY migrations ./migrations
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim AS runtime
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
RUN useradd --create-home --uid 10001 botmarket
WORKDIR /srv/botmarket
COPY --from=build /wheels /wheels
# The locked set and nothing else: no index, no resolution; pip check proves it complete.
RUN pip install --no-cache-dir --no-index --no-deps /wheels/* && pip check && rm -rf /wheels
USER botmarket
EXPOSE 8000
CMD ["botmarket", "serve", "--host", "0.0.0.0", "--port", "8000"]
