"""`--dask`: partitions scored as tasks on worker processes give exactly the in-process output, for
a local partitioned Parquet dataset and for input and output on S3 (moto's server on loopback)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyarrow import fs as pafs

import layerops
from tests.batch.conftest import MODEL, rows

pytestmark = pytest.mark.slow

BUCKET = "batch-tests"
S3_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
}


@pytest.fixture(scope="module")
def s3() -> Iterator[pafs.S3FileSystem]:
    """moto's S3 server on loopback, its endpoint and fake keys in the environment (set before the
    cluster starts, so its workers inherit them), and an empty bucket."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    with pytest.MonkeyPatch.context() as patch:
        for key, value in {**S3_ENVIRONMENT, "AWS_ENDPOINT_URL": f"http://{host}:{port}"}.items():
            patch.setenv(key, value)
        for key in ("AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_DEFAULT_REGION"):
            patch.delenv(key, raising=False)
        filesystem = pafs.S3FileSystem(
            endpoint_override=f"{host}:{port}", scheme="http", region="us-east-1",
            access_key="testing", secret_key="testing", allow_bucket_creation=True,
        )  # fmt: skip
        filesystem.create_dir(BUCKET)
        yield filesystem
    server.stop()


@pytest.fixture(scope="module")
def cluster(s3: pafs.S3FileSystem) -> Iterator[str]:
    """One LocalCluster of 2 worker processes for the module: its scheduler's address."""
    from distributed import Client, LocalCluster

    assert os.environ["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
            silence_logs=logging.ERROR,
        ) as local,
        Client(local),
    ):  # fmt: skip
        yield local.scheduler_address


def _dataset(folder: Path) -> None:
    """Three Parquet files in nested folders (one with a dictionary-encoded category), bad rows
    included, and the files a writer leaves beside them that a reader must skip."""
    frame = rows(3_000, seed=5, bad_every=20).astype({"x1": str, "n": str, "flag": str})
    for number, (part, first) in enumerate((("a", 0), ("b", 1_000), ("b", 2_000))):
        chunk = pa.Table.from_pandas(frame.iloc[first : first + 1_000], preserve_index=False)
        if number == 2:
            chunk = chunk.set_column(4, "color", chunk.column("color").dictionary_encode())
        (folder / f"day={part}").mkdir(parents=True, exist_ok=True)
        pq.write_table(chunk, folder / f"day={part}" / f"file-{number}.parquet", row_group_size=300)
    (folder / "_SUCCESS").write_text("")
    (folder / "day=a" / ".file-9.parquet.crc").write_text("")


def _cached_models() -> list[str]:
    """The keys of the scorers this worker process built (run on the workers)."""
    from layerops.batch import scoring

    return list(scoring._worker_scorers)


def _read(filesystem: pafs.FileSystem, path: str) -> pd.DataFrame:
    table = pq.read_table(path, filesystem=filesystem)
    return table.to_pandas().sort_values("row_number", ignore_index=True)


def test_dask_workers_score_a_dataset_exactly_as_this_process(
    home: Path, cluster: str, tmp_path: Path
) -> None:
    _dataset(tmp_path / "in")
    here = layerops.batch_predict(MODEL, tmp_path / "in", tmp_path / "here", partition_rows=400, home=home)
    there = layerops.batch_predict(
        MODEL, tmp_path / "in", tmp_path / "there", partition_rows=400, dask=cluster, home=home
    )
    assert (here.partitions_written, here.rows_scored + here.rows_rejected) == (
        9,
        3_000,
    )  # 400+400+200 a file
    assert (there.rows_scored, there.rows_rejected) == (here.rows_scored, here.rows_rejected)
    local = pafs.LocalFileSystem()
    for sub in ("", "/_rejects"):
        pd.testing.assert_frame_equal(
            _read(local, f"{tmp_path}/there{sub}"), _read(local, f"{tmp_path}/here{sub}"), check_exact=True
        )
    assert sorted(p.name for p in (tmp_path / "there").iterdir()) == sorted(
        p.name for p in (tmp_path / "here").iterdir()
    )
    from distributed import Client

    with Client(cluster) as client:  # each worker built its scorer once, cached by the model's digest
        cached = client.run(_cached_models)
    assert len(cached) == 2 and all(len(keys) == 1 for keys in cached.values())


def test_input_and_output_on_s3(home: Path, cluster: str, s3: pafs.S3FileSystem, tmp_path: Path) -> None:
    _dataset(tmp_path / "in")
    local = pafs.LocalFileSystem()
    pafs.copy_files(str(tmp_path / "in"), f"{BUCKET}/in", source_filesystem=local, destination_filesystem=s3)
    rows(500, bad_every=5).to_csv(tmp_path / "rows.csv", index=False)
    pafs.copy_files(str(tmp_path / "rows.csv"), f"{BUCKET}/rows.csv", local, s3)

    layerops.batch_predict(MODEL, tmp_path / "in", tmp_path / "expected", partition_rows=400, home=home)
    on_s3 = layerops.batch_predict(
        MODEL, f"s3://{BUCKET}/in/", f"s3://{BUCKET}/out", partition_rows=400, dask=cluster, home=home
    )
    assert on_s3.partitions_written == 9
    for sub in ("", "/_rejects"):
        pd.testing.assert_frame_equal(
            _read(s3, f"{BUCKET}/out{sub}"), _read(local, f"{tmp_path}/expected{sub}"), check_exact=True
        )
    again = layerops.batch_predict(
        MODEL, f"s3://{BUCKET}/in", f"s3://{BUCKET}/out", partition_rows=400, home=home
    )
    assert (again.partitions_written, again.partitions_skipped, again.rows_skipped) == (0, 9, 3_000)

    csv = layerops.batch_predict(MODEL, f"s3://{BUCKET}/rows.csv", f"s3://{BUCKET}/csv-out", home=home)
    expected = layerops.batch_predict(MODEL, tmp_path / "rows.csv", tmp_path / "csv-out", home=home)
    assert (csv.rows_scored, csv.rows_rejected) == (expected.rows_scored, expected.rows_rejected) == (440, 60)
    pd.testing.assert_frame_equal(_read(s3, f"{BUCKET}/csv-out"), _read(local, f"{tmp_path}/csv-out"))
