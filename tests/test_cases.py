"""Case tables: hand-written variants of each category, and near misses that must stay `unknown`.

Each row is (log excerpt, expected category) with a comment saying what the variant is.
"""

from __future__ import annotations

import pytest

CASES = [
    # registry-pull-hang
    ('Error response from daemon: Get "https://ghcr.io/v2/": net/http: TLS handshake timeout', "registry-pull-hang"),  # docker pull, TLS stall
    ("$ docker pull quay.io/prometheus/node-exporter:v1.8.1\nv1.8.1: Pulling from prometheus/node-exporter\n"
     "9fa9226be034: Pulling fs layer\n1617e25568b2: Downloading [==>        ]  1.1MB/23.5MB\n", "registry-pull-hang"),  # output stops mid-download
    ("  Warning  Failed   2m (x4 over 6m)  kubelet  Failed to pull image \"ghcr.io/acme/api:2.3.1\": rpc error: code = "
     "DeadlineExceeded desc = failed to pull and unpack image \"ghcr.io/acme/api:2.3.1\": failed to resolve reference "
     "\"ghcr.io/acme/api:2.3.1\": failed to do request: Head \"https://ghcr.io/v2/acme/api/manifests/2.3.1\": dial tcp "
     "140.82.112.34:443: i/o timeout", "registry-pull-hang"),  # kubelet event
    # apt-invalid-signature
    ("#6 2.113 Err:2 http://ports.ubuntu.com/ubuntu-ports noble InRelease\n#6 2.113   At least one invalid signature was encountered.",
     "apt-invalid-signature"),  # BuildKit plain, arm64 mirror
    ("W: GPG error: http://deb.debian.org/debian trixie InRelease: At least one invalid signature was encountered.\n"
     "E: The repository 'http://deb.debian.org/debian trixie InRelease' is not signed.", "apt-invalid-signature"),
    # no-space-left
    ("npm ERR! code ENOSPC\nnpm ERR! syscall write\nnpm ERR! errno -28\nnpm ERR! nospc ENOSPC: no space left on device, write",
     "no-space-left"),  # npm in a build step
    ("db-1  | 2024-05-02 10:11:12.345 UTC [1] FATAL:  could not write lock file \"postmaster.pid\": No space left on device",
     "no-space-left"),  # postgres under compose v2
    ("failed to register layer: write /usr/lib/jvm/java-17-openjdk-amd64/lib/modules: no space left on device", "no-space-left"),
    ("db-1  | 2025-02-03 09:12:44.101 CET [1] FATAL:  konnte nicht in Datei »pg_wal/xlogtemp.31« schreiben: Auf dem Gerät "
     "ist kein Speicherplatz mehr verfügbar", "no-space-left"),  # German locale
    # postgres-superuser-password
    ("postgres_1  | Error: Database is uninitialized and superuser password is not specified.\n"
     "postgres_1  |        You must specify POSTGRES_PASSWORD to a non-empty value for the", "postgres-superuser-password"),
    ("2024-03-01T10:00:01.000Z Error: Database is uninitialized and superuser password is not specified.",
     "postgres-superuser-password"),  # CI service container log
    # apt-release-eol
    ("E: The repository 'http://archive.ubuntu.com/ubuntu lunar Release' does not have a Release file.", "apt-release-eol"),
    ("Err:4 http://deb.debian.org/debian buster Release\n  404  Not Found [IP: 151.101.2.132 80]\n"
     "E: The repository 'http://deb.debian.org/debian buster Release' does not have a Release file.", "apt-release-eol"),
    # systemd-cgroup-readonly
    ("Welcome to Rocky Linux 9.3 (Blue Onyx)!\n\nFailed to create /init.scope control group: Read-only file system\n"
     "Failed to allocate manager object: Read-only file system\n[!!!!!!] Failed to allocate manager object.", "systemd-cgroup-readonly"),
    ("Failed to mount cgroup at /sys/fs/cgroup/systemd: Operation not permitted\n[!!!!!!] Failed to mount API filesystems.",
     "systemd-cgroup-readonly"),  # cgroup v1 image on a v2 host
    ("docker run -d -v /sys/fs/cgroup:/sys/fs/cgroup:ro centos:7 /usr/sbin/init\nFailed to create root cgroup hierarchy: "
     "Permission denied\nFailed to allocate manager object: Permission denied", "systemd-cgroup-readonly"),  # the run line mounts cgroups
    # docker-daemon-unreachable
    ("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?",
     "docker-daemon-unreachable"),
    ("error during connect: this error may indicate that the docker daemon is not running: Get "
     "\"http://%2F%2F.%2Fpipe%2FdockerDesktopLinuxEngine/v1.46/containers/json\": open //./pipe/dockerDesktopLinuxEngine: "
     "The system cannot find the file specified.", "docker-daemon-unreachable"),  # Docker Desktop on Windows, stopped
    # docker-socket-permission
    ("permission denied while trying to connect to the Docker daemon socket at unix:///var/run/docker.sock: Get "
     "\"http://%2Fvar%2Frun%2Fdocker.sock/v1.45/images/json\": dial unix /var/run/docker.sock: connect: permission denied",
     "docker-socket-permission"),
    # registry-rate-limit
    ("Error response from daemon: toomanyrequests: You have reached your pull rate limit. You may increase the limit by "
     "authenticating and upgrading: https://www.docker.com/increase-rate-limit", "registry-rate-limit"),
    ("ERROR: failed to solve: node:20-alpine: failed to copy: httpReadSeeker: failed open: unexpected status code "
     "https://registry-1.docker.io/v2/library/node/manifests/sha256:2d07: 429 Too Many Requests", "registry-rate-limit"),
    # image-not-found
    ("Error response from daemon: manifest for redis:7.9-alpine not found: manifest unknown: manifest unknown", "image-not-found"),
    ("docker: Error response from daemon: pull access denied for acme/web-app, repository does not exist or may require "
     "'docker login': denied: requested access to the resource is denied.", "image-not-found"),
    # registry-unauthorized
    ("unauthorized: authentication required", "registry-unauthorized"),
    ("denied: permission_denied: write_package", "registry-unauthorized"),  # ghcr push without packages: write
    ("no basic auth credentials", "registry-unauthorized"),  # ECR push before docker login
    # platform-mismatch
    ("exec /usr/local/bin/docker-entrypoint.sh: exec format error", "platform-mismatch"),
    ("no matching manifest for linux/arm64/v8 in the manifest list entries", "platform-mismatch"),
    # oom-killed
    ("#14 41.97 Killed\n#14 ERROR: process \"/bin/sh -c npm run build\" did not complete successfully: exit code: 137",
     "oom-killed"),
    ("    Last State:     Terminated\n      Reason:       OOMKilled\n      Exit Code:    137", "oom-killed"),
    # port-already-allocated
    ("docker: Error response from daemon: driver failed programming external connectivity on endpoint web "
     "(4f0c2b): Bind for 0.0.0.0:8080 failed: port is already allocated.", "port-already-allocated"),
    ("Error response from daemon: Ports are not available: exposing port TCP 0.0.0.0:5432 -> 0.0.0.0:0: listen tcp "
     "0.0.0.0:5432: bind: address already in use", "port-already-allocated"),
    ("Trying to pull quay.io/acme/tools:2.1...\nError: choosing an image from manifest list docker://quay.io/acme/tools:2.1: "
     "no image found in manifest list for architecture arm64, variant \"v8\", OS linux", "platform-mismatch"),  # podman
    # build-context-file-not-found
    ("COPY failed: file not found in build context or excluded by .dockerignore: stat package-lock.json: file does not exist",
     "build-context-file-not-found"),
    ("ERROR: failed to solve: failed to compute cache key: failed to calculate checksum of ref 1a2b::3c4d: "
     "\"/target/app.jar\": not found", "build-context-file-not-found"),
    (" => [final 2/3] COPY --from=build /out/api /usr/local/bin/api                 0.1s\n"
     " => ERROR [final 3/3] COPY conf/app.toml /etc/api/app.toml                   0.0s\n------\n"
     " > [final 3/3] COPY conf/app.toml /etc/api/app.toml:\n------\nERROR: failed to solve: failed to compute cache key: "
     "failed to calculate checksum of ref 9f8e::7d6c: \"/conf/app.toml\": not found",
     "build-context-file-not-found"),  # multi-stage: an earlier COPY --from worked, a plain COPY failed
    ("#12 [4/5] COPY build/libs/*.jar /app/\n#12 ERROR: lstat /var/lib/docker/tmp/buildkit-mount902211873/build/libs: "
     "no such file or directory", "build-context-file-not-found"),  # wildcard COPY of a directory not in the context
    # build-dns-failure
    ("Err:1 http://deb.debian.org/debian bookworm InRelease\n  Temporary failure resolving 'deb.debian.org'", "build-dns-failure"),
    ("npm ERR! request to https://registry.npmjs.org/lodash failed, reason: getaddrinfo EAI_AGAIN registry.npmjs.org",
     "build-dns-failure"),
    # apt-interactive-prompt
    ("Configuring tzdata\n------------------\n\nPlease select the geographic area in which you live.\n\nGeographic area: ",
     "apt-interactive-prompt"),
    ("debconf: unable to initialize frontend: Dialog\ndebconf: (TERM is not set, so the dialog frontend is not usable.)",
     "apt-interactive-prompt"),
    # pip-externally-managed
    ("error: externally-managed-environment\n\n× This environment is externally managed\n╰─> To install Python packages "
     "system-wide, try apt install\n    python3-xyz, where xyz is the package you are trying to", "pip-externally-managed"),
    # container-name-conflict
    ("docker: Error response from daemon: Conflict. The container name \"/redis\" is already in use by container "
     "\"9f3b5c\". You have to remove (or rename) that container to be able to reuse that name.", "container-name-conflict"),
    # volume-permission-denied
    ("initdb: error: could not change permissions of directory \"/var/lib/postgresql/data\": Operation not permitted",
     "volume-permission-denied"),
    ("grafana-1  | GF_PATHS_DATA='/var/lib/grafana' is not writable.", "volume-permission-denied"),
    ('mongo-1  | {"s":"E","c":"CONTROL","msg":"DBException in initAndListen, terminating","attr":{"error":"Location28596: '
     'Unable to determine status of lock file in the data directory /data/db: boost::filesystem::status: Permission denied '
     '[system:13]: \\"/data/db/mongod.lock\\""}}', "volume-permission-denied"),  # mongo JSON log
    # db-connection-refused
    ("web-1  | django.db.utils.OperationalError: connection to server at \"localhost\" (127.0.0.1), port 5432 failed: "
     "Connection refused\nweb-1  | \tIs the server running on that host and accepting TCP/IP connections?",
     "db-connection-refused"),
    ("api-1  | Error: connect ECONNREFUSED 127.0.0.1:3306", "db-connection-refused"),
    # two failures: the root cause wins, the symptom is reported too
    ("No space left on device\nW: GPG error: http://deb.debian.org/debian bookworm InRelease: At least one invalid "
     "signature was encountered.", "no-space-left"),
]

NEAR_MISSES = [
    # rootless Docker refusing a port below 1024: a permission problem, not a port in use
    "Error response from daemon: driver failed programming external connectivity on endpoint web-1 (4c1e9a): Error starting "
    "userland proxy: error while calling RootlessKit PortManager.AddPort(): cannot expose privileged port 80, you can add "
    "'net.ipv4.ip_unprivileged_port_start=80' to /etc/sysctl.conf (currently 1024), or set CAP_NET_BIND_SERVICE on rootlesskit "
    "binary, or choose a larger port number (>= 1024): listen tcp4 0.0.0.0:80: bind: permission denied",
    # the Docker CLI cannot read its own config on the host; the bind mount next to it is fine
    "+ docker run --rm -v \"$PWD\":/src -w /src golang:1.22 go test ./...\nWARNING: Error loading config file: "
    "/var/lib/jenkins/.docker/config.json: open /var/lib/jenkins/.docker/config.json: permission denied\nok  \tgithub.com/acme/cart\t0.412s",
    # apt signature problems that are not "invalid signature"
    "W: GPG error: https://apt.example.com stable InRelease: The following signatures couldn't be verified because the "
    "public key is not available: NO_PUBKEY 4F4EA0AAE5267A6C\nE: The repository 'https://apt.example.com stable InRelease' is not signed.",
    "E: Unable to locate package libssl1.1",  # a package that does not exist
    "psql: error: connection to server at \"db\" (172.18.0.2), port 5432 failed: FATAL:  password authentication failed for user \"app\"",
    "Error response from daemon: Get \"https://registry.internal/v2/\": x509: certificate signed by unknown authority",
    "FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory",
    "src/main.c:14:10: fatal error: openssl/ssl.h: No such file or directory\ncompilation terminated.\nmake: *** [Makefile:9: all] Error 1",
    "FAILED tests/test_orders.py::test_refund - AssertionError: assert 200 == 404",
    "Successfully built 3f1a2b4c5d6e\nSuccessfully tagged api:latest",
    " => exporting to image                                              0.3s\n => => naming to docker.io/library/web:dev     0.0s",
    "db-1  | 2024-05-02 10:00:00.000 UTC [1] LOG:  database system is ready to accept connections",
    "Error: No such container: e2e-db",
    "Error response from daemon: network with name backend already exists",
    "curl: (7) Failed to connect to localhost port 8080 after 0 ms: Connection refused",
    "Traceback (most recent call last):\n  File \"/app/main.py\", line 3, in <module>\n    import yaml\nModuleNotFoundError: No module named 'yaml'",
]


@pytest.mark.parametrize("log, expected", CASES, ids=[f"{e}-{i}" for i, (_, e) in enumerate(CASES)])
def test_when_category_variant_then_category(diagnoser, log, expected):
    assert diagnoser.verdict(log).category == expected


@pytest.mark.parametrize("log", NEAR_MISSES, ids=[f"near-{i}" for i in range(len(NEAR_MISSES))])
def test_when_near_miss_then_unknown(diagnoser, log):
    verdict = diagnoser.verdict(log)
    assert verdict.category == "unknown", f"{verdict.category} by {verdict.decided_by} ({verdict.confidence:.2f})"
    assert verdict.decided_by == "none"
