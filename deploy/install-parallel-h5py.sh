#!/usr/bin/env bash
# Install a parallel (MPI-IO) h5py, and an mpi4py on the same MPI library, into a virtual
# environment on Debian 12 (bookworm), as root (or with sudo).
#
#   bash deploy/install-parallel-h5py.sh [VENV]      # VENV defaults to $VIRTUAL_ENV
#
# What it does:
#   1. apt-get installs Debian's MPICH and its parallel HDF5 (libhdf5-mpich-dev, libmpich-dev,
#      mpich, pkg-config, build-essential), unless they are there already.
#   2. Builds h5py (HDF5_MPI=ON) against Debian's mpich HDF5, and mpi4py against Debian's
#      libmpich, from their sdists on PyPI (the versions already installed, if any), both at
#      once, and installs the two wheels into the venv. h5py and mpi4py must use one MPI
#      library: the mpi4py *wheel* loads the venv's libmpi.so.12 (PyPI `mpich`, MPICH 5) while
#      parallel h5py links Debian's libmpich.so.12 (MPICH 4), and a process would then hold two
#      MPI libraries.
#   3. Checks h5py.get_config().mpi, one MPI library per process, serial HDF5 files, and a
#      driver="mpio" write under `$VENV/bin/mpiexec -n 2`. The venv's mpiexec (hydra from the
#      PyPI `mpich` package) launches Debian-MPICH processes; only if it does not (or is
#      missing) is it replaced by a wrapper that runs Debian's /usr/bin/mpiexec.mpich.
#   4. Writes $VENV/bin/daskorym-mpi-env.sh (callers source it; it sets DASKORYM_MPIEXEC) and
#      prints the mpiexec to use.
# Idempotent: nothing is built when the checks pass already. Built wheels are kept in
# ${DASKORYM_MPI_WHEELHOUSE:-~/.cache/daskorym-mpi-wheels} for another venv on the same machine.
# Run it after `pip install -e '.[mpi]'`: a later pip run that reinstalls h5py or mpi4py from
# wheels undoes it (run this script again then).
set -euo pipefail

START=$SECONDS
VENV=${1:-${VIRTUAL_ENV:-}}
if [[ -z "$VENV" || ! -x "$VENV/bin/python" ]]; then
    echo "install-parallel-h5py: activate a virtual environment or pass its path" >&2
    exit 2
fi
VENV=$(cd "$VENV" && pwd)
PY="$VENV/bin/python"
ENV_FILE="$VENV/bin/daskorym-mpi-env.sh"
log() { echo "[install-parallel-h5py] $*"; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/parallel-h5py.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# Run a command quietly; on failure show the end of its output.
quiet() {
    local out="$WORK/quiet.log"
    if ! "$@" >"$out" 2>&1; then
        echo "install-parallel-h5py: failed: $*" >&2
        tail -n 60 "$out" >&2
        return 1
    fi
}

# --- 1. Debian packages ------------------------------------------------------------------
APT_PACKAGES=(libhdf5-mpich-dev libmpich-dev mpich pkg-config build-essential)
SUDO=()
if [[ $EUID -ne 0 ]]; then
    if command -v sudo >/dev/null; then
        SUDO=(sudo)
    else
        echo "install-parallel-h5py: needs root (or sudo) for apt-get" >&2
        exit 1
    fi
fi
missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$p")
done
if ((${#missing[@]})); then
    log "apt-get install ${missing[*]}"
    quiet "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    quiet "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends "${APT_PACKAGES[@]}"
fi

MULTIARCH=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)
HDF5_INC=/usr/include/hdf5/mpich
HDF5_LIB=/usr/lib/$MULTIARCH/hdf5/mpich
LIBMPICH=$(readlink -f "/usr/lib/$MULTIARCH/libmpich.so.12")
# Debian's compiler wrapper by its full name: with the venv active, plain `mpicc` is the PyPI
# mpich's (MPICH 5) wrapper.
MPICC=/usr/bin/mpicc.mpich
DEBIAN_MPIEXEC=/usr/bin/mpiexec.mpich
for f in "$HDF5_INC/hdf5.h" "$HDF5_LIB/libhdf5.so" "$LIBMPICH" "$MPICC" "$DEBIAN_MPIEXEC"; do
    [[ -e "$f" ]] || { echo "install-parallel-h5py: $f missing after apt-get" >&2; exit 1; }
done
# Debian's mpi.h first: setuptools' build_ext puts $VENV/include, which holds the PyPI mpich's
# (MPICH 5) mpi.h, on the include path, and an mpi4py built with that header fails to import
# here ("undefined symbol: MPI_Buffer_iflush"). CPPFLAGS comes before build_ext's -I options.
MPI_CPPFLAGS="$(pkg-config --cflags-only-I mpich) ${CPPFLAGS:-}"
# Python's own CFLAGS (-O3 ...), without debug information (smaller wheels, a bit faster).
# (Recent setuptools takes $CFLAGS instead of Python's flags, older ones after them: both fine.)
PY_CFLAGS=$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("CFLAGS") or "")')
BUILD_CFLAGS="${CFLAGS:-$PY_CFLAGS} -g0"  # a caller's CFLAGS (e.g. -O1: faster build) win

# --- checks ------------------------------------------------------------------------------------
cat >"$WORK/check.py" <<'PYEOF'
"""h5py: h5py is built with MPI.  mpi4py LIB: mpi4py loads LIB and no other MPI library.
libs LIB PATH: both in one process, and a serial HDF5 file at PATH.
mpio PATH: each rank writes its rows with driver='mpio'; rank 0 checks them after a barrier."""
import os
import sys

mode = sys.argv[1]


def mpi_libraries():
    libs = set()
    with open("/proc/self/maps") as maps:
        for line in maps:
            p = line.split()[-1]
            if os.path.basename(p).startswith(("libmpi.so", "libmpich.so", "libmpi_abi.so")):
                libs.add(os.path.realpath(p))
    return libs


if mode in ("h5py", "libs", "mpio"):
    import h5py
    if not h5py.get_config().mpi:
        sys.exit("h5py is not built with MPI")
if mode in ("mpi4py", "libs"):
    import mpi4py
    mpi4py.rc.initialize = False
    from mpi4py import MPI
    if mpi_libraries() != {sys.argv[2]}:
        sys.exit(f"MPI libraries in the process: {sorted(mpi_libraries())}, "
                 f"expected only {sys.argv[2]}")
if mode == "libs":
    import numpy as np
    with h5py.File(sys.argv[3], "w") as f:  # serial files still work
        f["x"] = np.arange(5)
    with h5py.File(sys.argv[3], "r") as f:
        assert f["x"][...].tolist() == [0, 1, 2, 3, 4]
    print(MPI.Get_library_version().splitlines()[0].strip(), "| HDF5", h5py.version.hdf5_version)
if mode == "mpio":
    import numpy as np
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    rank, size, n = comm.rank, comm.size, 4
    path = sys.argv[2]
    with h5py.File(path, "w", driver="mpio", comm=comm) as f:
        d = f.create_dataset("rows", (size * n, 3), dtype="i8")
        d[rank * n:(rank + 1) * n] = rank * 100 + np.arange(n * 3).reshape(n, 3)
    comm.Barrier()
    if rank == 0:
        with h5py.File(path, "r") as f:
            got = f["rows"][...]
        want = np.concatenate([r * 100 + np.arange(n * 3).reshape(n, 3) for r in range(size)])
        if not np.array_equal(got, want):
            print("mpio write: wrong content", flush=True)
            comm.Abort(1)
        print(f"mpio write with {size} ranks: ok")
PYEOF
check() { "$PY" "$WORK/check.py" "$@"; }
check_mpio() { timeout 120 "$1" -n 2 "$PY" "$WORK/check.py" mpio "$WORK/mpio.h5"; }

# --- 2. build and install h5py / mpi4py where needed -------------------------------------------
NEED=()
check h5py >/dev/null 2>&1 || NEED+=(h5py)
check mpi4py "$LIBMPICH" >/dev/null 2>&1 || NEED+=(mpi4py)
if ((${#NEED[@]} == 0)); then
    log "h5py in $VENV is parallel already, and mpi4py is on Debian's MPICH: no build"
else
    version_of() {
        "$PY" -c 'import importlib.metadata as m, sys
try: print(m.version(sys.argv[1]))
except m.PackageNotFoundError: pass' "$1"
    }
    H5PY_VERSION=$(version_of h5py)
    MPI4PY_VERSION=$(version_of mpi4py)
    H5PY_SPEC="h5py${H5PY_VERSION:+==$H5PY_VERSION}"
    MPI4PY_SPEC="mpi4py${MPI4PY_VERSION:+==$MPI4PY_VERSION}"
    key=$("$PY" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')
    key+=-$(dpkg-query -W -f='hdf5-${Version}' libhdf5-mpich-dev)
    key+=-$(dpkg-query -W -f='mpich-${Version}' libmpich-dev)
    WHEELHOUSE=${DASKORYM_MPI_WHEELHOUSE:-${XDG_CACHE_HOME:-$HOME/.cache}/daskorym-mpi-wheels}
    WHEELHOUSE+=/${key//[^A-Za-z0-9._-]/_}
    mkdir -p "$WHEELHOUSE"
    wheel_for() {  # NAME [VERSION]: "-" when not needed, a wheel built before, or nothing
        local w
        [[ " ${NEED[*]} " == *" $1 "* ]] || { echo -; return; }
        for w in "$WHEELHOUSE"/"$1"-${2:-*}-*.whl; do
            [[ -e "$w" ]] && { echo "$w"; return; }
        done
        true
    }
    H5PY_WHEEL=$(wheel_for h5py "$H5PY_VERSION")
    MPI4PY_WHEEL=$(wheel_for mpi4py "$MPI4PY_VERSION")

    if [[ -z "$H5PY_WHEEL" || -z "$MPI4PY_WHEEL" ]]; then
        log "build requirements (setuptools>=77, Cython, numpy, pkgconfig) into the venv"
        quiet "$PY" -m pip install --quiet "setuptools>=77" wheel "Cython>=3" numpy pkgconfig
        # h5py's build cimports mpi4py (the same .pxd files in the wheel and the sdist)
        "$PY" -c "import mpi4py" 2>/dev/null || quiet "$PY" -m pip install --quiet "$MPI4PY_SPEC"
        pids=()
        if [[ -z "$H5PY_WHEEL" ]]; then
            log "building $H5PY_SPEC on $HDF5_LIB"
            env HDF5_MPI=ON H5PY_SETUP_REQUIRES=0 HDF5_INCLUDEDIR="$HDF5_INC" \
                HDF5_LIBDIR="$HDF5_LIB" CC="$MPICC" CFLAGS="$BUILD_CFLAGS" \
                CPPFLAGS="$MPI_CPPFLAGS" \
                "$PY" -m pip wheel --no-deps --no-build-isolation --no-cache-dir \
                --no-binary=h5py -w "$WORK/h5py" "$H5PY_SPEC" >"$WORK/h5py-build.log" 2>&1 &
            pids+=("$!:h5py")
        fi
        if [[ -z "$MPI4PY_WHEEL" ]]; then
            log "building $MPI4PY_SPEC on $LIBMPICH"
            env MPICC="$MPICC" CC="$MPICC" CFLAGS="$BUILD_CFLAGS" CPPFLAGS="$MPI_CPPFLAGS" \
                "$PY" -m pip wheel --no-deps --no-build-isolation --no-cache-dir \
                --no-binary=mpi4py -w "$WORK/mpi4py" "$MPI4PY_SPEC" \
                >"$WORK/mpi4py-build.log" 2>&1 &
            pids+=("$!:mpi4py")
        fi
        failed=0
        for p in "${pids[@]}"; do
            if ! wait "${p%%:*}"; then
                echo "install-parallel-h5py: building ${p#*:} failed:" >&2
                tail -n 60 "$WORK/${p#*:}-build.log" >&2
                failed=1
            fi
        done
        ((failed == 0)) || exit 1
        for name in h5py mpi4py; do
            for w in "$WORK/$name/$name"-*.whl; do
                [[ -e "$w" ]] || continue
                cp "$w" "$WHEELHOUSE/"
                if [[ $name == h5py ]]; then H5PY_WHEEL=$w; else MPI4PY_WHEEL=$w; fi
            done
        done
    else
        log "using wheels built before, from $WHEELHOUSE"
    fi
    wheels=()
    for w in "$H5PY_WHEEL" "$MPI4PY_WHEEL"; do
        [[ "$w" == - ]] || wheels+=("$w")
    done
    log "installing ${wheels[*]##*/}"
    quiet "$PY" -m pip install --quiet --no-deps --force-reinstall "${wheels[@]}"
    quiet "$PY" -m pip install --quiet "${wheels[@]}"  # their dependencies (numpy), if missing
fi
if ! check libs "$LIBMPICH" "$WORK/serial.h5" >"$WORK/check.log" 2>&1; then
    cat "$WORK/check.log" >&2
    echo "install-parallel-h5py: h5py/mpi4py in $VENV fail the check" \
         "(if they came from stale wheels, remove ${WHEELHOUSE:-the wheelhouse})" >&2
    exit 1
fi
log "$(cat "$WORK/check.log")"

# --- 3. the venv's mpiexec must launch these processes -----------------------------------------
MPIEXEC="$VENV/bin/mpiexec"
if [[ -x "$MPIEXEC" ]] && check_mpio "$MPIEXEC" >"$WORK/mpio.log" 2>&1; then
    log "$MPIEXEC: $(tail -n 1 "$WORK/mpio.log")"
else
    if [[ -e "$MPIEXEC" ]]; then
        log "$MPIEXEC fails here:"
        tail -n 20 "$WORK/mpio.log"
    fi
    if ! check_mpio "$DEBIAN_MPIEXEC" >"$WORK/mpio.log" 2>&1; then
        cat "$WORK/mpio.log" >&2
        echo "install-parallel-h5py: driver='mpio' fails under $DEBIAN_MPIEXEC too" >&2
        exit 1
    fi
    # A wrapper, not a symlink: hydra's mpiexec starts the hydra_pmi_proxy found next to the
    # path it was called by, and $VENV/bin/hydra_pmi_proxy is the PyPI mpich's.
    if [[ -e "$MPIEXEC" ]] && ! grep -q "install-parallel-h5py" "$MPIEXEC"; then
        mv -f "$MPIEXEC" "$MPIEXEC.pypi-mpich"
    fi
    rm -f "$MPIEXEC"
    printf '#!/bin/sh\n# %s\nexec %s "$@"\n' \
        "Debian MPICH launcher, by deploy/install-parallel-h5py.sh" "$DEBIAN_MPIEXEC" >"$MPIEXEC"
    chmod +x "$MPIEXEC"
    check_mpio "$MPIEXEC" >"$WORK/mpio.log" 2>&1 || { cat "$WORK/mpio.log" >&2; exit 1; }
    log "$MPIEXEC is now a wrapper that runs Debian's $DEBIAN_MPIEXEC"
fi

# --- 4. environment for callers ----------------------------------------------------------------
if grep -q "install-parallel-h5py" "$MPIEXEC"; then
    MPIEXEC_KIND="a wrapper that runs Debian's $DEBIAN_MPIEXEC"
else
    MPIEXEC_KIND="$(readlink -f "$MPIEXEC") (hydra, e.g. from the PyPI mpich package)"
fi
cat >"$ENV_FILE" <<EOF
# Written by deploy/install-parallel-h5py.sh; source it before running MPI jobs.
# h5py (driver="mpio", HDF5 $(dpkg-query -W -f='${Version}' libhdf5-mpich-dev)) and mpi4py are
# built on Debian's MPICH, $LIBMPICH: no LD_LIBRARY_PATH is needed.
# Launch MPI jobs with the venv's mpiexec, $MPIEXEC_KIND:
export DASKORYM_MPIEXEC="$MPIEXEC"
EOF
log "done in $((SECONDS - START)) s. Callers: source $ENV_FILE (sets DASKORYM_MPIEXEC);" \
    "mpiexec to use: $MPIEXEC"
