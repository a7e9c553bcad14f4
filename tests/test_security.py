"""Safety: Dask over TLS (API and ``daskorym reconstruct --tls-*``), output folders never
world-writable, and no pickle/eval of what is read from disk in daskorym's own code."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr
from distributed import Client
from distributed.security import Security

from conftest import small_settings, write_run_toml
from daskorym.execution import make_reconstruction
from daskorym.execution.cluster import make_local_cluster
from daskorym.outputs import OutputFolder

DASKORYM = Path(sys.executable).parent / "daskorym"
PACKAGE = Path(__file__).resolve().parent.parent / "daskorym"


def _certificates(folder: Path) -> tuple[Path, Path, Path]:
    """``(ca, cert, key)`` PEM files of a self-signed certificate that is its own CA.

    From ``Security.temporary()`` where ``cryptography`` is installed, else the openssl CLI.
    """
    ca, cert, key = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    try:
        temporary = Security.temporary()
    except ImportError:
        if shutil.which("openssl") is None:
            pytest.skip("neither the cryptography package nor the openssl command is available")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-keyout", str(key), "-out", str(cert), "-subj", "/CN=daskorym-test",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                       check=True, capture_output=True)
        shutil.copy(cert, ca)
    else:
        ca.write_text(temporary.tls_ca_file)
        cert.write_text(temporary.tls_client_cert)
        key.write_text(temporary.tls_client_key)
    return ca, cert, key


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    """A TLS-only LocalCluster (1 worker process): ``(cluster, security, (ca, cert, key))``."""
    ca, cert, key = _certificates(tmp_path_factory.mktemp("certs"))
    files = {k: str(v) for k, v in dict(ca=ca, cert=cert, key=key).items()}
    security = Security(tls_ca_file=files["ca"], tls_client_cert=files["cert"],
                        tls_client_key=files["key"], tls_scheduler_cert=files["cert"],
                        tls_scheduler_key=files["key"], tls_worker_cert=files["cert"],
                        tls_worker_key=files["key"], require_encryption=True)
    cluster = make_local_cluster(1, security=security)
    assert cluster.scheduler_address.startswith("tls://")
    yield cluster, security, (ca, cert, key)
    cluster.close()


def _local_object(data, folder) -> np.ndarray:
    s = small_settings(data, folder, execution={"precision": "float64"},
                       optimization={"n_epochs": 2, "minibatch_size": 8},
                       output={"store_checkpoint": False})
    with make_reconstruction(s) as rec:
        rec.run()
        return rec.object.copy()


def _rel(a, b) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_reconstruction_over_tls(tls, small_2d, tmp_path):
    cluster, security, _ = tls
    s = small_settings(small_2d, tmp_path / "dask", execution={"engine": "dask",
                                                               "precision": "float64"},
                       optimization={"n_epochs": 2, "minibatch_size": 8},
                       output={"store_checkpoint": False})
    with Client(cluster, security=security) as client:
        assert client.scheduler.address.startswith("tls://")
        with make_reconstruction(s, client=client) as rec:
            rec.run()
            obj = rec.object.copy()
        workers = client.scheduler_info()["workers"]
    assert workers and all(w.startswith("tls://") for w in workers)
    rel = _rel(obj, _local_object(small_2d, tmp_path / "local"))
    print(f"over TLS ({list(workers)}): object rel. diff to the local engine {rel:.2e}")
    assert rel < 1e-5


def _config(path: Path, data: Path) -> Path:
    return write_run_toml(path, data, output={"store_checkpoint": False})


def _reconstruct(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(DASKORYM), "reconstruct", *args], capture_output=True, text=True,
                          timeout=300)


def test_cli_over_tls(tls, small_2d, tmp_path):
    cluster, _, (ca, cert, key) = tls
    config = _config(tmp_path / "run.toml", small_2d)
    done = _reconstruct(str(config), "--engine", "dask", "--cluster", cluster.scheduler_address,
                        "--tls-ca", str(ca), "--tls-cert", str(cert), "--tls-key", str(key),
                        "--output", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    obj = zarr.open_array(str(tmp_path / "out" / "object.zarr"), mode="r")[...]
    rel = _rel(obj, _local_object(small_2d, tmp_path / "local"))
    print(f"daskorym reconstruct --cluster {cluster.scheduler_address} --tls-*: object rel. "
          f"diff to the local engine {rel:.2e}")
    assert rel < 1e-5


@pytest.mark.parametrize("case", ["no-tls-options", "ca-only", "not-a-tls-address"])
def test_cli_tls_misuse_is_a_clear_error(case, tls, small_2d, tmp_path):
    cluster, _, (ca, cert, key) = tls
    config = _config(tmp_path / "run.toml", small_2d)
    address = cluster.scheduler_address
    args, expected = {
        "no-tls-options": ([], "a TLS scheduler needs --tls-ca, --tls-cert and --tls-key"),
        "ca-only": (["--tls-ca", str(ca)], "--tls-cert, --tls-key missing"),
        "not-a-tls-address": (["--tls-ca", str(ca), "--tls-cert", str(cert), "--tls-key",
                               str(key)], "expected --engine dask and --cluster tls://"),
    }[case]
    if case == "not-a-tls-address":
        address = address.replace("tls://", "tcp://")
    done = _reconstruct(str(config), "--engine", "dask", "--cluster", address, *args,
                        "--output", str(tmp_path / "out"))
    print(done.stderr.strip())
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert expected in done.stderr
    assert not (tmp_path / "out").exists()


def test_output_folder_is_not_world_writable(tmp_path):
    old = os.umask(0o022)
    try:
        out = OutputFolder(tmp_path / "a" / "b" / "run")
        obj = np.random.default_rng(0).random((8, 8, 2, 2), dtype=np.float32)
        out.write_object(obj, "delta_beta")
        out.write_probe(np.ones((1, 8, 8), np.complex64))
        out.write_parameter("probe_pos", np.zeros((1, 4, 2)))
        out.save_checkpoint({"obj": obj, "opt/obj/m": obj}, {"epoch": 0, "batch": 0})
        out.write_settings({"a": 1})
        out.append_loss(0, 0, 1.0, 0.1)
        out.write_previews(obj, "delta_beta")
    finally:
        os.umask(old)
    paths = [tmp_path / "a", tmp_path / "a" / "b", *out.path.parent.rglob("*")]
    modes = {str(p.relative_to(tmp_path)): stat.S_IMODE(p.stat().st_mode) for p in paths}
    assert modes["a/b/run"] & 0o002 == 0 and modes["a/b/run"] == 0o755
    world_writable = {p: oct(m) for p, m in modes.items() if m & stat.S_IWOTH}
    assert world_writable == {}
    assert all(m & 0o777 in (0o755, 0o644) for m in modes.values()), modes


# patterns that would deserialise code or objects from what is read (disk or network)
UNSAFE = {
    "pickle.load(s)": r"\b(cloud)?pickle\.loads?\(",
    "import pickle": r"^\s*(import (cloud)?pickle\b|from (cloud)?pickle import)",
    "eval(": r"(?<![\w.])eval\(",
    "exec(": r"(?<![\w.])exec\(",
    "allow_pickle=True": r"allow_pickle\s*=\s*True",
    "torch.load(": r"\btorch\.load\(",
    "yaml.load(": r"\byaml\.(unsafe_)?load\(",
    "marshal/shelve/dill": r"\b(marshal\.loads?|shelve\.open|dill\.loads?)\(",
    "read_pickle": r"\bread_pickle\(",
}


def test_no_pickle_or_eval_of_data_read_from_disk():
    sources = sorted(PACKAGE.rglob("*.py"))
    assert len(sources) > 20
    found = []
    for path in sources:
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            for name, pattern in UNSAFE.items():
                if re.search(pattern, line):
                    found.append(f"{path.relative_to(PACKAGE.parent)}:{number}: {name}: {line}")
            if re.search(r"\bnp\.load\(", line) and "allow_pickle=False" not in line:
                found.append(f"{path.relative_to(PACKAGE.parent)}:{number}: np.load without "
                             f"allow_pickle=False: {line}")
    assert found == [], "\n".join(found)


def test_direct_exchange_over_tls(tls, small_2d, tmp_path):
    """On a TLS cluster the direct exchange's own links are TLS with the workers'
    certificates (2 workers, so slabs and gradient rows do cross them): same object as the
    local engine."""
    _, security, _ = tls
    cluster = make_local_cluster(2, security=security)
    s = small_settings(small_2d, tmp_path / "direct", execution={
        "engine": "dask", "exchange": "direct", "precision": "float64"},
        optimization={"n_epochs": 2, "minibatch_size": 8}, output={"store_checkpoint": False})
    try:
        with Client(cluster, security=security) as client:
            with make_reconstruction(s, client=client) as rec:
                rec.run()
                obj = rec.object.copy()
                links = client.run(_link_kinds)
    finally:
        cluster.close()
    assert len(links) == 2 and all(v == ["SSLSocket"] for v in links.values()), links
    rel = _rel(obj, _local_object(small_2d, tmp_path / "local"))
    print(f"direct exchange over TLS links {links}: object rel. diff to the local engine "
          f"{rel:.2e}")
    assert rel < 1e-5


def _link_kinds(dask_worker=None):
    """The kinds of the outgoing links of the slab owner on this worker."""
    actor = next(iter(dask_worker.state.actors.values()))
    return sorted({type(s).__name__ for s in actor._links._out.values()})
