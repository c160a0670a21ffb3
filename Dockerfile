# One image for watcher, workers, Flower and the emulators; the command picks the role.
# `make image` builds it. It runs as uid/gid 65532 (the runAsUser of deploy/) with a read-only
# root filesystem: nothing is written at run time except /tmp, an emptyDir in deploy/.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 HOME=/tmp
WORKDIR /app
COPY pyproject.toml README.md ./
COPY cli ./cli
COPY polycrate ./polycrate
COPY watcher ./watcher
COPY workers ./workers
COPY tasks ./tasks
COPY emulators ./emulators
COPY sandbox ./sandbox
RUN pip install . \
 && groupadd --gid 65532 operator \
 && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /tmp operator
USER 65532:65532
ENTRYPOINT ["polycrate"]
CMD ["operator", "run"]
