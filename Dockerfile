# One image for watcher, workers, Flower and the emulators; the command picks the role.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY polycrate ./polycrate
COPY watcher ./watcher
COPY workers ./workers
COPY tasks ./tasks
COPY emulators ./emulators
COPY sandbox ./sandbox
RUN pip install . && useradd --uid 65532 --no-create-home operator
USER 65532
ENTRYPOINT ["polycrate"]
CMD ["operator", "run"]
