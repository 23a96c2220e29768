"""What the trainer does with bad inputs and interruptions.

Each test names the behaviour: fresh clips every epoch (and the same ones on a rerun or a
resume), an error instead of a hang when the videos are unusable, a resumed ``metrics.jsonl``
equal to the uninterrupted one, no checkpoint debris after a kill, a non-finite loss traced to
its steps and clips, a warm-up cut to the run, and a CLI run killed with SIGKILL (at a random step
and during a checkpoint write) that resumes to bit-identical weights.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import warnings
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from test_train import FRAMES, SIZE, Clips, TinyMAE, cfg, make_model
from torch.utils.data import ConcatDataset, Subset
from videofiles import textured_frames, write_video

from maskvid_edu.data.datasets import (
    MAX_SKIPPED_SHARE,
    MIN_ITEMS_FOR_SHARE,
    UnusableDataError,
    VideoDataset,
    collate_skip_bad,
)
from maskvid_edu.data.sampler import set_dataset_epoch
from maskvid_edu.train import CHECKPOINT_NAME, METRICS_NAME, Trainer, load_checkpoint, train

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[1]
TIMING = ("time", "sec_per_step")  # the only fields of a record that may differ between runs


@contextmanager
def deadline(seconds: int):
    """Fail (instead of hanging the suite) if the block runs longer than ``seconds``."""

    def fail(signum, frame):
        raise TimeoutError(f"still running after {seconds} s: the loop does not terminate")

    before = signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, before)


def metrics(out_dir) -> list[dict]:
    lines = (Path(out_dir) / METRICS_NAME).read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in lines]


def weights(model_or_state) -> dict:
    sd = model_or_state if isinstance(model_or_state, dict) else model_or_state.state_dict()
    return {k: v.detach().clone() for k, v in sd.items()}


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# ---------------------------------------------------------------------------------------------
# fresh clips every epoch
# ---------------------------------------------------------------------------------------------


class RecordingVideos(VideoDataset):
    """A real ``VideoDataset`` that notes, per item served, the epoch it believed it was in,
    the frame window it sampled and the clip it returned (the crop shows in the pixels)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.served: list[tuple] = []
        self._window = None

    def frame_indices(self, num_frames, generator=None):
        idx, padded = super().frame_indices(num_frames, generator)
        self._window = tuple(int(i) for i in idx)
        return idx, padded

    def __getitem__(self, index):
        item = super().__getitem__(index)
        self.served.append((self.epoch, index, self._window, item["video"].clone()))
        return item


@pytest.fixture(scope="module")
def video_list(tmp_path_factory):
    """Eight real 40-frame textured videos (48×64) and a ``path`` list of them."""
    folder = tmp_path_factory.mktemp("videos")
    for i in range(8):
        write_video(folder / f"v{i}.avi", textured_frames(40, 48, 64, seed=i))
    listing = folder / "train.txt"
    listing.write_text("".join(f"v{i}.avi\n" for i in range(8)))
    return listing


def recording_dataset(video_list) -> RecordingVideos:
    parsed = VideoDataset.from_list(video_list).samples
    return RecordingVideos(parsed, mode="pretrain", sampling="dense", clip_len=FRAMES, stride=2, size=SIZE, seed=3)


def test_every_epoch_draws_new_clip_windows_and_crops(video_list):
    data = recording_dataset(video_list)
    train(make_model(), data, cfg(steps=8, batch_size=2, warmup_steps=1), collate_fn=collate_skip_bad)
    epochs = {}
    for epoch, index, window, video in data.served:  # 8 videos, 4 steps per epoch: epochs 0 and 1
        epochs.setdefault(epoch, {})[index] = (window, video)
    assert sorted(epochs) == [0, 1] and all(len(e) == 8 for e in epochs.values())
    for index in range(8):
        (w0, v0), (w1, v1) = epochs[0][index], epochs[1][index]
        assert not torch.equal(v0, v1), f"video {index}: the same clip in epochs 0 and 1"
    windows_changed = sum(epochs[0][i][0] != epochs[1][i][0] for i in range(8))
    assert windows_changed >= 6, windows_changed  # 17 possible windows per video: most must move


def test_the_same_seed_draws_the_same_clips_and_a_wrapped_dataset_gets_the_epoch_too(video_list):
    a, b = recording_dataset(video_list), recording_dataset(video_list)
    train(make_model(), a, cfg(steps=6, batch_size=2), collate_fn=collate_skip_bad)
    train(make_model(), Subset(b, range(8)), cfg(steps=6, batch_size=2))  # through a Subset
    assert [s[:3] for s in a.served] == [s[:3] for s in b.served]
    assert all(torch.equal(x[3], y[3]) for x, y in zip(a.served, b.served))
    assert {s[0] for s in b.served} == {0, 1}
    # ConcatDataset: every part hears the epoch
    parts = [recording_dataset(video_list), recording_dataset(video_list)]
    assert set_dataset_epoch(ConcatDataset(parts), 5) == 2 and [p.epoch for p in parts] == [5, 5]


@pytest.mark.parametrize("stop_at", [3, 4, 5])  # inside epoch 0, at its end, inside epoch 1
def test_a_resumed_run_sees_the_clips_an_uninterrupted_one_sees(video_list, tmp_path, stop_at):
    kw = dict(steps=7, batch_size=2, log_every=3, ckpt_every=2, warmup_steps=1)
    straight_data = recording_dataset(video_list)
    straight = make_model()
    train(straight, straight_data, cfg(tmp_path / "a", **kw), collate_fn=collate_skip_bad)

    cut_data = recording_dataset(video_list)
    train(make_model(), cut_data, cfg(tmp_path / "b", **kw), collate_fn=collate_skip_bad, stop_at=stop_at)
    resumed_data = recording_dataset(video_list)  # a new process would build a new dataset
    resumed = make_model(seed=9)
    train(resumed, resumed_data, cfg(tmp_path / "b", **kw), collate_fn=collate_skip_bad, resume=True)

    served = cut_data.served + resumed_data.served
    assert [s[:3] for s in served] == [s[:3] for s in straight_data.served]
    assert all(torch.equal(x[3], y[3]) for x, y in zip(served, straight_data.served))
    assert_same_weights(weights(straight), weights(resumed))
    assert metrics(tmp_path / "b") == metrics(tmp_path / "a")


# ---------------------------------------------------------------------------------------------
# unusable data: an error, never a hang
# ---------------------------------------------------------------------------------------------


def test_a_wrong_root_stops_with_an_error_naming_list_root_reasons_and_paths(video_list, tmp_path):
    wrong_root = tmp_path / "elsewhere"
    wrong_root.mkdir()
    with pytest.warns(UserWarning):  # each skipped video warns
        data = VideoDataset.from_list(video_list, wrong_root, mode="pretrain", clip_len=FRAMES, stride=2, size=SIZE, seed=0)
        with deadline(60), pytest.raises(UnusableDataError) as err:
            train(make_model(), data, cfg(steps=50, batch_size=2), collate_fn=collate_skip_bad)
    message = str(err.value)
    assert "a whole epoch (8 clips) yielded no usable clip" in message
    assert str(video_list) in message and str(wrong_root) in message
    assert "missing_file 8" in message
    assert sum(str(wrong_root / f"v{i}.avi") in message for i in range(8)) == 3


def write_mixed_list(folder: Path, video: Path, good: int, missing: int) -> Path:
    """A list of ``good`` lines naming one real video and ``missing`` lines naming none, interleaved."""
    lines = [video.name] * good + [f"gone_{i}.avi" for i in range(missing)]
    random.Random(0).shuffle(lines)
    listing = folder / f"mixed_{good}_{missing}.txt"
    listing.write_text("\n".join(lines) + "\n")
    return listing


def test_skipping_more_than_half_of_the_clips_stops_training(video_list, tmp_path):
    listing = write_mixed_list(video_list.parent, video_list.parent / "v0.avi", good=30, missing=70)
    data = VideoDataset.from_list(listing, mode="pretrain", clip_len=FRAMES, stride=2, size=SIZE, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with deadline(60), pytest.raises(UnusableDataError, match=r"of the first \d+ clips loaded were skipped") as err:
            train(make_model(), data, cfg(steps=40, batch_size=4), collate_fn=collate_skip_bad)
    assert data.stats.seen >= MIN_ITEMS_FOR_SHARE
    assert data.stats.seen - data.stats.used > MAX_SKIPPED_SHARE * data.stats.seen
    assert str(listing) in str(err.value) and "missing_file" in str(err.value) and "gone_" in str(err.value)


def test_a_minority_of_bad_videos_is_skipped_and_counted(video_list, tmp_path):
    listing = write_mixed_list(video_list.parent, video_list.parent / "v1.avi", good=12, missing=4)
    data = VideoDataset.from_list(listing, mode="pretrain", clip_len=FRAMES, stride=2, size=SIZE, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hist = train(make_model(), data, cfg(steps=6, batch_size=4), collate_fn=collate_skip_bad)
    assert len(hist) == 3 and data.stats.skipped["missing_file"] > 0 and data.stats.used > 0


# ---------------------------------------------------------------------------------------------
# resume: the logged curve, debris
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stop_at", [5, 6, 7])
def test_resuming_inside_a_logging_window_reproduces_metrics_jsonl(tmp_path, stop_at):
    kw = dict(steps=12, log_every=4, ckpt_every=3, warmup_steps=2)
    straight = make_model()
    train(straight, Clips(16), cfg(tmp_path / "a", **kw))
    cut = train(make_model(), Clips(16), cfg(tmp_path / "b", **kw), stop_at=stop_at)
    assert cut[-1]["step"] == stop_at  # the stopped run still reports where it got to
    resumed = make_model(seed=4)
    hist = train(resumed, Clips(16), cfg(tmp_path / "b", **kw), resume=True)
    assert metrics(tmp_path / "b") == metrics(tmp_path / "a")
    assert [r["step"] for r in hist] == [4, 8, 12]
    assert_same_weights(weights(straight), weights(resumed))


def test_temporary_files_of_an_interrupted_checkpoint_write_are_removed(tmp_path):
    train(make_model(), Clips(16), cfg(tmp_path, steps=4), stop_at=2)
    stale = tmp_path / f".{CHECKPOINT_NAME}.k1ll3d.tmp"
    stale.write_bytes(b"half a checkpoint")
    other = tmp_path / ".notes.txt.tmp"  # not this run's: left alone
    other.write_text("keep")
    with pytest.warns(UserWarning, match="left by a checkpoint write that was interrupted"):
        train(make_model(), Clips(16), cfg(tmp_path, steps=4), resume=True)
    assert not stale.exists() and other.exists()
    assert load_checkpoint(tmp_path / CHECKPOINT_NAME)["step"] == 4


# ---------------------------------------------------------------------------------------------
# a non-finite loss: which steps, which clips
# ---------------------------------------------------------------------------------------------


class OneInfiniteClip(Clips):
    """Clips whose item 11 holds an ``inf`` pixel; items carry ``index`` and a ``samples`` list."""

    def __init__(self, n: int = 16):
        super().__init__(n)
        self.videos[11, 0, 0, 0, 0] = float("inf")
        self.samples = [type("Sample", (), {"path": f"clip_{i:02d}.mp4"})() for i in range(n)]

    def __getitem__(self, i):
        return {**super().__getitem__(i), "index": i}


def test_a_non_finite_loss_names_its_step_range_and_the_clips_of_the_bad_step(tmp_path):
    data = OneInfiniteClip()
    with pytest.raises(FloatingPointError) as err:
        train(make_model(), data, cfg(tmp_path, steps=12, log_every=100, ckpt_every=6))
    message = str(err.value)
    order = torch.randperm(16, generator=torch.Generator().manual_seed(0)).tolist()  # epoch 0's order
    bad_step = order.index(11) // 4
    # a masked inf reaches the loss (its target); a visible one, which TinyMAE's loss never reads,
    # leaves the loss finite but makes the gradient NaN (0 · inf in the backward pass): either
    # way the very step that trained on the clip is named
    assert re.search(rf"non-finite (loss|gradient) at step {bad_step} ", message), message
    assert "11 (clip_11.mp4)" in message
    first_check = 6 if bad_step < 6 else 12
    assert f"Found at step {first_check}" in message and f"steps {first_check - 6}–{first_check - 1}" in message
    batch = order[bad_step * 4 : bad_step * 4 + 4]
    assert all(f"{i} (clip_{i:02d}.mp4)" in message for i in batch)


# ---------------------------------------------------------------------------------------------
# a warm-up longer than the run
# ---------------------------------------------------------------------------------------------


def test_a_warmup_longer_than_the_run_is_cut_to_a_tenth_of_it_with_a_warning():
    with pytest.warns(UserWarning, match="warm-up of 40 steps is not shorter than the run .20 steps.*2 steps"):
        trainer = Trainer(make_model(), Clips(16), cfg(steps=20, warmup_steps=40, log_every=1, lr=1e-2))
    assert trainer.warmup_steps == 2
    hist = trainer.fit()
    assert max(r["lr"] for r in hist) == pytest.approx(1e-2)  # the peak is reached
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Trainer(make_model(), Clips(16), cfg(steps=20, warmup_steps=19)).warmup_steps == 19


# ---------------------------------------------------------------------------------------------
# the CLI, killed with SIGKILL
# ---------------------------------------------------------------------------------------------

# Runs `python -m maskvid_edu <argv>` in this process, after arming one SIGKILL: after optimizer
# step KILL_AFTER_STEP, or half-way through writing the KILL_IN_SAVE-th checkpoint of the process
# (half of the bytes are on disk, flushed, in the temporary file; then the process dies).
RUNNER = textwrap.dedent("""
    import os, runpy, signal, sys
    import torch
    from maskvid_edu import train as train_module

    step_kill = int(os.environ.get("KILL_AFTER_STEP", "0"))
    save_kill = int(os.environ.get("KILL_IN_SAVE", "0"))
    if step_kill:
        optimizer_step = train_module.Trainer._optimizer_step
        def step_then_die(self, step):
            optimizer_step(self, step)
            if step + 1 == step_kill:
                os.kill(os.getpid(), signal.SIGKILL)
        train_module.Trainer._optimizer_step = step_then_die
    if save_kill:
        real_save, saves = torch.save, []
        def die_mid_write(obj, f, *args, **kwargs):
            saves.append(1)
            if len(saves) < save_kill:
                return real_save(obj, f, *args, **kwargs)
            import io
            buffer = io.BytesIO()
            real_save(obj, buffer)
            f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
            f.flush()
            os.fsync(f.fileno())
            os.kill(os.getpid(), signal.SIGKILL)
        torch.save = die_mid_write
    sys.argv = ["maskvid_edu"] + sys.argv[1:]
    runpy.run_module("maskvid_edu", run_name="__main__", alter_sys=True)
""")

TINY = ["--model-arg", "img_size=32", "--model-arg", "num_frames=4", "--model-arg", "dim=32", "--model-arg", "depth=1",
        "--model-arg", "heads=2", "--model-arg", "decoder_dim=32", "--model-arg", "decoder_depth=1",
        "--model-arg", "decoder_heads=2", "--num-samples", "16", "--batch-size", "2", "--steps", "30",
        "--log-every", "4", "--ckpt-every", "5", "--device", "cpu", "--num-workers", "0", "--threads", "1",
        "--no-progress"]


def start(out: Path, *extra: str, **kill: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), **{k: str(v) for k, v in kill.items()}}
    return subprocess.Popen([sys.executable, "-c", RUNNER, "pretrain", "--out", str(out), *TINY, *extra],
                            env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    stdout, stderr = proc.communicate(timeout=240)
    return proc.returncode, stdout + stderr


def test_cli_pretrain_killed_at_a_random_step_and_mid_checkpoint_resumes_bit_exactly(tmp_path):
    kill_step = random.Random(2024).randint(6, 28)  # after the first checkpoint (step 5)
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    uninterrupted = start(straight)  # runs beside the interrupted chain
    code_b, out_b = finish(start(cut, KILL_AFTER_STEP=kill_step))
    assert code_b == -signal.SIGKILL, out_b
    assert load_checkpoint(cut / CHECKPOINT_NAME)["step"] == kill_step // 5 * 5

    code, out = finish(start(cut, "--resume", KILL_IN_SAVE=1))  # dies while writing its first checkpoint
    assert code == -signal.SIGKILL, out
    debris = list(cut.glob(f".{CHECKPOINT_NAME}.*.tmp"))
    assert len(debris) == 1 and debris[0].stat().st_size > 0
    resumed_from = load_checkpoint(cut / CHECKPOINT_NAME)["step"]  # the previous checkpoint, intact
    assert resumed_from == kill_step // 5 * 5

    code, out = finish(start(cut, "--resume"))
    assert code == 0, out
    code_a, out_a = finish(uninterrupted)
    assert code_a == 0, out_a
    assert "warming up over 3 steps" in out_a  # the recipe's 40 warm-up steps, cut to the 30-step run
    assert not list(cut.glob("*.tmp")) and not list(cut.glob(".*.tmp"))
    assert metrics(cut) == metrics(straight)
    a, b = load_checkpoint(straight / CHECKPOINT_NAME), load_checkpoint(cut / CHECKPOINT_NAME)
    assert a["step"] == b["step"] == 30
    assert_same_weights(a["model"], b["model"])
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["exp_avg"], sb["exp_avg"]) and torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])
