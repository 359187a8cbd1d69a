import importlib.util
from pathlib import Path

import pandas as pd
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "stage_times.py"
HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


@pytest.fixture(scope="module")
def stage_times():
    spec = importlib.util.spec_from_file_location("stage_times", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write(results, model, rule, job, rows):
    folder = results / model / "benchmarks" / rule
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"{s}\t0:00:{int(s):02d}\t{rss}\t1\t1\t1\t0\t0\t50\t{cpu}\n" for s, cpu, rss in rows]
    (folder / f"{job}.tsv").write_text(HEADER + "".join(lines))


def test_per_stage_summary(stage_times, tmp_path, capsys):
    write(tmp_path, "organism", "train", "mesa_w~4", [(10.0, 18.0, 500.0)])
    write(tmp_path, "organism", "train", "sft_full", [(30.0, 50.0, 900.0)])
    write(tmp_path, "organism", "select", "ot", [(1.0, 1.0, 100.0), (3.0, 2.0, 120.0)])  # repeated
    write(tmp_path, "other", "profile", "all", [(5.0, 9.0, "NA")])
    table = stage_times.stage_times(stage_times.read_benchmarks(tmp_path))
    assert list(table.columns) == stage_times.COLUMNS
    train = table[(table.model == "organism") & (table.rule == "train")].iloc[0]
    assert (train.jobs, train.total_s, train.mean_s, train.max_s) == (2, 40.0, 20.0, 30.0)
    assert (train.cpu_s, train.max_rss_mb) == (68.0, 900.0)
    select = table[table.rule == "select"].iloc[0]
    assert (select.jobs, select.total_s, select.max_rss_mb) == (1, 2.0, 120.0)
    assert train.share == pytest.approx(40 / 42)
    assert table[table.model == "other"].share.tolist() == [1.0]
    assert table.rule.tolist()[:2] == ["train", "select"]  # largest first within a model
    stage_times.main([str(tmp_path), "--csv", str(tmp_path / "t.csv")])
    assert "organism: 42.0 s of jobs" in capsys.readouterr().out
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "t.csv"), table, check_dtype=False)


def test_no_benchmarks_and_foreign_files(stage_times, tmp_path):
    with pytest.raises(FileNotFoundError, match="benchmarks"):
        stage_times.read_benchmarks(tmp_path)
    folder = tmp_path / "m" / "benchmarks" / "train"
    folder.mkdir(parents=True)
    (folder / "x.tsv").write_text("a\tb\n1\t2\n")
    with pytest.raises(ValueError, match="not a Snakemake benchmark file"):
        stage_times.read_benchmarks(tmp_path)
