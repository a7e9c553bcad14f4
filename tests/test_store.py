"""One contract for every ObjectStore (memory, zarr, hdf5, Dask worker slabs), plus the
specifics of each store and ``create_store``."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import zarr
from distributed import Client, LocalCluster

from daskorym.physics.region import Region, extract_region
from daskorym.store import (HDF5Store, MemoryStore, ObjectStore, WorkerSlabStore, ZarrStore,
                            create_store)

SHAPE = (10, 7, 3, 2)  # Ly = 10 with h = 4: slabs [0, 4), [4, 8), [8, 10)
H = 4
FILL = (1.0, 0.0)
REGIONS = {
    "three_slabs_inside": Region(2, 1, 7, 4),
    "leaves_every_side": Region(-3, -2, 16, 12),
    "top_left": Region(-2, -3, 7, 5),
    "bottom_right": Region(6, 4, 6, 6),
    "one_slab": Region(4, 0, 3, 7),
    "outside": Region(11, 8, 2, 2),
}


def random_array(seed: int, shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def reference_update(ref: np.ndarray, region: Region, values: np.ndarray, op: str) -> None:
    ov = region.overlap(ref.shape[0], ref.shape[1])
    if ov is not None:
        oy, ox, ry, rx = ov
        if op == "add":
            ref[oy, ox] += values[ry, rx]
        else:
            ref[oy, ox] = values[ry, rx]


class StoreContract:
    """Tests every store must pass; subclasses define ``make`` and ``reopen``."""

    def make(self, path: Path, **layout) -> ObjectStore:
        raise NotImplementedError

    def reopen(self, store: ObjectStore) -> ObjectStore:
        """A new store with the same contents (closing ``store`` if it is file-backed)."""
        raise NotImplementedError

    @pytest.fixture
    def store(self, tmp_path):
        store = self.make(tmp_path / "store", shape=SHAPE, slab_height=H, fill_value=FILL)
        yield store
        store.close()

    @pytest.fixture
    def filled(self, store):
        ref = random_array(0)
        store.write_all(ref)
        return store, ref

    def test_layout(self, store):
        assert store.shape == SHAPE and store.dtype == np.float32
        assert (store.slab_height, store.n_slabs, store.fill_value) == (H, 3, FILL)
        assert [store.slab_bounds(i) for i in range(3)] == [(0, 4), (4, 8), (8, 10)]
        assert [store.slab_of_row(y) for y in (0, 3, 4, 9)] == [0, 0, 1, 2]
        assert store.slabs_overlapping(-5, 5) == range(0, 2)
        assert store.slabs_overlapping(3, 9) == range(0, 3)
        assert store.slabs_overlapping(8, 30) == range(2, 3)
        assert len(store.slabs_overlapping(10, 30)) == 0
        assert len(store.slabs_overlapping(-4, 0)) == 0

    def test_new_store_holds_zeros(self, store):
        np.testing.assert_array_equal(store.read_all(), np.zeros(SHAPE, np.float32))

    def test_slab_round_trip(self, store):
        slabs = [random_array(i, (y1 - y0,) + SHAPE[1:]) for i, y0, y1 in store.iter_slabs()]
        for i, slab in enumerate(slabs):
            store.write_slab(i, slab)
        slabs[2][:] = 7.0  # the store kept its own copy
        assert store.read_slab(2).shape == (2,) + SHAPE[1:]
        np.testing.assert_array_equal(store.read_slab(0), slabs[0])
        np.testing.assert_array_equal(store.read_slab(1), slabs[1])
        assert not np.any(store.read_slab(2) == 7.0)

    def test_read_slab_is_a_copy(self, filled):
        store, ref = filled
        store.read_slab(1)[:] = 5.0
        np.testing.assert_array_equal(store.read_slab(1), ref[4:8])

    def test_write_casts_to_store_dtype(self, store):
        store.write_slab(0, np.full((4,) + SHAPE[1:], 0.5, np.float64))
        out = store.read_slab(0)
        assert out.dtype == np.float32 and np.all(out == 0.5)

    @pytest.mark.parametrize("name", REGIONS)
    def test_read_region(self, filled, name):
        store, ref = filled
        region = REGIONS[name]
        out = store.read_region(region)
        assert out.shape == (region.ny, region.nx) + SHAPE[2:] and out.dtype == np.float32
        np.testing.assert_array_equal(out, extract_region(ref, region, FILL))

    @pytest.mark.parametrize("op", ["set", "add"])
    @pytest.mark.parametrize("name", REGIONS)
    def test_update_region(self, filled, name, op):
        store, ref = filled
        region = REGIONS[name]
        values = random_array(1, (region.ny, region.nx) + SHAPE[2:])
        (store.add_region if op == "add" else store.write_region)(region, values)
        reference_update(ref, region, values, op)
        np.testing.assert_allclose(store.read_all(), ref, rtol=0, atol=1e-6)

    def test_add_region_twice_accumulates(self, store):
        region = REGIONS["top_left"]
        values = random_array(2, (region.ny, region.nx) + SHAPE[2:])
        store.add_region(region, values)
        values_copy = values.copy()
        values[:] = 100.0  # the store must not keep the caller's buffer
        store.add_region(region, values_copy)
        ref = np.zeros(SHAPE, np.float32)
        reference_update(ref, region, 2 * values_copy, "add")
        np.testing.assert_allclose(store.read_all(), ref, rtol=0, atol=1e-6)

    def test_iter_slabs_covers_each_row_once(self, store):
        rows = [y for i, y0, y1 in store.iter_slabs() for y in range(y0, y1)]
        assert rows == list(range(SHAPE[0]))
        assert [i for i, _, _ in store.iter_slabs()] == [0, 1, 2]

    def test_read_all_write_all(self, filled):
        store, ref = filled
        np.testing.assert_array_equal(store.read_all(), ref)

    def test_fill(self, store):
        store.fill((1.0, -2.0))
        out = store.read_all()
        assert np.all(out[..., 0] == 1.0) and np.all(out[..., 1] == -2.0)
        store.fill(3.0)
        assert np.all(store.read_all() == 3.0)

    def test_snapshot(self, filled, tmp_path):
        store, ref = filled
        path = store.snapshot(tmp_path / "snap.zarr")
        store.write_region(REGIONS["leaves_every_side"], np.zeros((16, 12) + SHAPE[2:]))
        with ObjectStore.open_snapshot(path) as snap:
            assert isinstance(snap, ZarrStore) and snap.read_only
            assert (snap.shape, snap.slab_height, snap.fill_value) == (SHAPE, H, FILL)
            assert snap.array.chunks == (H,) + SHAPE[1:]
            np.testing.assert_array_equal(snap.read_all(), ref)
        with store.open_snapshot(path, mode="r+") as snap:
            snap.write_slab(0, np.zeros((H,) + SHAPE[1:]))
            assert not snap.read_only

    def test_reopen(self, filled):
        store, ref = filled
        again = self.reopen(store)
        try:
            assert (again.shape, again.slab_height, again.fill_value) == (SHAPE, H, FILL)
            np.testing.assert_array_equal(again.read_all(), ref)
        finally:
            again.close()

    def test_bad_region_array(self, store):
        region = REGIONS["top_left"]
        with pytest.raises(ValueError, match=r"shape .*\(7, 5, 3, 2\).*got shape \(7, 4, 3, 2\)"):
            store.write_region(region, np.zeros((7, 4, 3, 2)))
        with pytest.raises(ValueError, match="must have shape"):
            store.add_region(region, np.zeros((7, 5, 3)))

    def test_bad_slab(self, store):
        with pytest.raises(IndexError, match="slab index 3 out of range.*3 slabs"):
            store.read_slab(3)
        with pytest.raises(IndexError, match="slab index -1"):
            store.write_slab(-1, np.zeros((4,) + SHAPE[1:]))
        with pytest.raises(ValueError, match=r"slab 2 .*shape \(2, 7, 3, 2\).*\(4, 7, 3, 2\)"):
            store.write_slab(2, np.zeros((4,) + SHAPE[1:]))
        with pytest.raises(ValueError, match="write_all needs shape"):
            store.write_all(np.zeros((9,) + SHAPE[1:]))
        with pytest.raises(IndexError, match="row 10 outside"):
            store.slab_of_row(10)

    def test_closed_store_refuses_use(self, tmp_path):
        with self.make(tmp_path / "closed", shape=SHAPE, slab_height=H) as store:
            assert store.fill_value == (0.0, 0.0)
        assert store.closed
        with pytest.raises(ValueError, match="closed"):
            store.read_slab(0)


class TestMemoryStore(StoreContract):
    def make(self, path, **layout):
        return MemoryStore(**layout)

    def reopen(self, store):
        return MemoryStore.from_array(store.read_all(), store.slab_height, store.fill_value)

    def test_wraps_data_without_copy(self):
        data = random_array(3)
        store = MemoryStore.from_array(data, 4, copy=False)
        store.add_region(Region(0, 0, 1, 1), np.ones((1, 1, 3, 2)))
        assert store.data is data and store.n_slabs == 3


class TestZarrStore(StoreContract):
    def make(self, path, **layout):
        return ZarrStore.create(path.with_suffix(".zarr"), **layout)

    def reopen(self, store):
        store.close()
        return ZarrStore.open(store.path)

    def test_chunks_are_slabs_without_compression(self, store):
        array = zarr.open_array(str(store.path), mode="r")
        assert array.chunks == (H,) + SHAPE[1:] and array.compressors == ()
        assert array.attrs["daskorym_store"]["slab_height"] == H

    def test_create_over_existing_path(self, store):
        with pytest.raises(FileExistsError, match="exists.*overwrite=True"):
            ZarrStore.create(store.path, SHAPE, slab_height=H)
        again = ZarrStore.create(store.path, (4, 2, 2, 2), slab_height=2, overwrite=True)
        assert ZarrStore.open(again.path).shape == (4, 2, 2, 2)

    def test_read_only(self, filled):
        store, _ = filled
        with ZarrStore.open(store.path, mode="r") as ro:
            with pytest.raises(PermissionError, match="read-only"):
                ro.write_slab(0, np.zeros((H,) + SHAPE[1:]))
        with pytest.raises(ValueError, match="mode must be"):
            ZarrStore.open(store.path, mode="w")

    def test_open_missing_or_not_slab_chunked(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="no Zarr v3 array"):
            ZarrStore.open(tmp_path / "missing.zarr")
        zarr.create_array(str(tmp_path / "odd.zarr"), shape=SHAPE, chunks=(4, 3, 3, 2),
                          dtype="float32")
        with pytest.raises(ValueError, match="not a slab store"):
            ZarrStore.open(tmp_path / "odd.zarr")

    def test_snapshot_refuses_foreign_target(self, store, tmp_path):
        (tmp_path / "notes").mkdir()
        (tmp_path / "notes" / "a.txt").write_text("keep me")
        with pytest.raises(FileExistsError, match="refusing to replace"):
            store.snapshot(tmp_path / "notes")
        with pytest.raises(ValueError, match="onto itself"):
            store.snapshot(store.path)


class TestHDF5Store(StoreContract):
    def make(self, path, **layout):
        return HDF5Store.create(path.with_suffix(".h5"), **layout)

    def reopen(self, store):
        path = store.path
        store.close()
        return HDF5Store.open(path)

    def test_chunks_are_slabs(self, store):
        assert store.dataset.chunks == (H,) + SHAPE[1:]

    def test_create_over_existing_path(self, store):
        with pytest.raises(FileExistsError, match="exists.*overwrite=True"):
            HDF5Store.create(store.path, SHAPE, slab_height=H)

    def test_shared_open_file(self, tmp_path):
        with h5py.File(tmp_path / "many.h5", "w") as f:
            obj = HDF5Store.create(f, SHAPE, slab_height=H, dataset="obj")
            grad = HDF5Store.create(f, SHAPE, slab_height=H, dataset="grad")
            grad.fill(2.0)
            with pytest.raises(FileExistsError, match="already has dataset 'obj'"):
                HDF5Store.create(f, SHAPE, dataset="obj")
            obj.close()
            assert f.id.valid and np.all(grad.read_all() == 2.0)
        with HDF5Store.open(tmp_path / "many.h5", dataset="grad", mode="r") as ro:
            assert ro.read_only and np.all(ro.read_slab(2) == 2.0)
            with pytest.raises(PermissionError, match="read-only"):
                ro.fill(0.0)


@pytest.fixture(scope="module")
def client():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        yield client


class TestWorkerSlabStore(StoreContract):
    @pytest.fixture(autouse=True)
    def _client(self, client):
        self.client = client

    def make(self, path, **layout):
        return WorkerSlabStore(self.client, **layout)

    def reopen(self, store):
        return WorkerSlabStore.from_store(self.client, MemoryStore.from_array(
            store.read_all(), store.slab_height, store.fill_value))

    def test_slabs_live_on_their_owners(self, filled):
        store, _ = filled
        workers = sorted(self.client.nthreads())
        assert [store.owner(i) for i in range(3)] == [workers[0], workers[1], workers[0]]
        store.add_region(REGIONS["leaves_every_side"], np.ones((16, 12) + SHAPE[2:]))
        store.wait()
        who_has = self.client.who_has(list(store.futures))
        assert [list(who_has[f.key]) for f in store.futures] == [[store.owner(i)]
                                                                 for i in range(3)]
        assert {store.owner(i) for i in range(3)} == set(workers)

    def test_replaced_futures_are_released(self, filled):
        store, _ = filled
        old = [f.key for f in store.futures]
        store.write_slab(0, np.zeros((H,) + SHAPE[1:]))
        store.add_region(REGIONS["one_slab"], np.ones((3, 7, 3, 2)))
        store.wait()
        assert all(self.client.refcount.get(key, 0) == 0 for key in old[:2])
        assert self.client.refcount.get(old[2], 0) == 1

    def test_map_and_replace_slabs(self, filled):
        store, ref = filled
        other = WorkerSlabStore.from_store(self.client, MemoryStore.from_array(ref, H))
        futures = store.map_slabs(np.add, other)
        store.replace_slabs(store.map_slabs(np.multiply, 0.5, dtype=np.float32))
        np.testing.assert_array_equal(store.read_all(), ref * 0.5)
        store.replace_slabs(futures)
        np.testing.assert_array_equal(store.read_all(), ref + ref)
        with pytest.raises(ValueError, match="needs 3 Futures"):
            store.replace_slabs(futures[:2])
        with pytest.raises(TypeError, match="from_store"):
            store.map_slabs(np.add, MemoryStore(SHAPE, slab_height=H))
        with pytest.raises(ValueError, match="share"):
            store.map_slabs(np.add, WorkerSlabStore(self.client, SHAPE, slab_height=3))

    def test_bad_slab_result_is_reported(self, store):
        store.replace_slabs(store.map_slabs(np.sum))
        with pytest.raises(ValueError, match="slab 0 holds"):
            store.read_slab(0)

    def test_unknown_worker(self):
        with pytest.raises(ValueError, match="not in the cluster"):
            WorkerSlabStore(self.client, SHAPE, workers=["tcp://nowhere:1"])


@pytest.mark.parametrize("kind", ["memory", "zarr", "hdf5", "workers"])
def test_create_store(kind, tmp_path, client):
    path = tmp_path / f"s.{kind}"
    store = create_store(kind, SHAPE, slab_height=H, fill_value=FILL, path=path,
                         client=client)
    with store:
        assert (store.shape, store.n_slabs, store.fill_value) == (SHAPE, 3, FILL)


def test_create_store_errors():
    with pytest.raises(ValueError, match="needs path="):
        create_store("zarr", SHAPE)
    with pytest.raises(ValueError, match="needs path="):
        create_store("hdf5", SHAPE)
    with pytest.raises(ValueError, match="needs client="):
        create_store("workers", SHAPE)
    with pytest.raises(ValueError, match="unknown store kind 'tiff'"):
        create_store("tiff", SHAPE)
    with pytest.raises(ValueError, match="shape must be 4 integers"):
        create_store("memory", (4, 4, 2))
    with pytest.raises(ValueError, match="fill_value must be"):
        create_store("memory", SHAPE, fill_value=(1.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="slab_height must be"):
        create_store("memory", SHAPE, slab_height=0)
