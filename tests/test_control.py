"""pixelbytes.control (issue #15): filters, plants, controllers, datasets, the model as a controller."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("scipy")

from pixelbytes.control import (
    LQG,
    PID,
    BangBang,
    ClosedLoopDivergenceError,
    LTIPlant,
    UnstablePlantError,
    episode_metrics,
    gameboy_frequency_response,
    gameboy_speaker,
    random_plant,
    run_closed_loop,
    setpoint_schedule,
    speaker_filter,
    speaker_frequency_response,
    speaker_transfer_function,
    tune_pid,
)


def db(h):
    return 20 * np.log10(np.abs(h))


# ------------------------------------------------------------------------------------------------ filters
def test_gameboy_bandpass_frequency_response():
    centre = np.sqrt(100 * 3000)
    assert abs(db(gameboy_frequency_response([centre]))[0]) < 0.01  # flat pass band
    np.testing.assert_allclose(db(gameboy_frequency_response([100.0, 3000.0])), -3.0103, atol=1e-3)  # Butterworth edges
    assert db(gameboy_frequency_response([20.0]))[0] < -50  # low stop band
    assert db(gameboy_frequency_response([3900.0]))[0] < -50  # high stop band (near 4096 Hz Nyquist)


def test_gameboy_speaker_keeps_the_band_and_removes_the_rest():
    t = np.arange(16000) / 16000
    mid = slice(4000, -4000)  # away from the FFT-resampling edges
    for freq, low, high in ((548.0, 0.99, 1.01), (30.0, 0.0, 0.02), (5000.0, 0.0, 0.02)):
        x = np.sin(2 * np.pi * freq * t)
        y = gameboy_speaker(x, 16000, normalize=False)
        assert y.shape == x.shape
        assert low <= np.std(y[mid]) / np.std(x[mid]) <= high, freq
    assert np.max(np.abs(gameboy_speaker(np.sin(2 * np.pi * 548 * t), 16000))) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="NaN"):
        gameboy_speaker(np.array([0.0, np.nan, 1.0]), 16000)
    with pytest.raises(ValueError, match="mono"):
        gameboy_speaker(np.zeros((2, 100)), 16000)


def test_second_order_speaker_model():
    K, wn, zeta = 2.0, 50.0, 0.05
    w = np.linspace(1, 200, 20000)
    h = speaker_frequency_response(w, K, wn, zeta)
    assert abs(speaker_frequency_response([0.0], K, wn, zeta)[0]) == pytest.approx(K)  # DC gain K
    assert w[np.argmax(np.abs(h))] == pytest.approx(wn * np.sqrt(1 - 2 * zeta**2), abs=0.02)  # resonance ~ wn
    assert abs(speaker_frequency_response([wn], K, wn, zeta)[0]) == pytest.approx(K / (2 * zeta))
    assert abs(speaker_frequency_response([10 * wn], K, wn, zeta)[0]) < K / 90  # -40 dB/decade above wn
    from scipy import signal

    _, h_scipy = signal.freqresp(speaker_transfer_function(K, wn, zeta), w[::500])
    np.testing.assert_allclose(h_scipy, h[::500], rtol=1e-10)
    x = np.sin(wn * np.arange(16000) / 8000)  # a resonant sine through the discretised filter
    assert np.max(np.abs(speaker_filter(x, 8000, K, wn, zeta)[8000:])) == pytest.approx(K / (2 * zeta), rel=0.02)
    with pytest.raises(ValueError, match="zeta > 0"):
        speaker_transfer_function(1.0, 10.0, -0.1)


# ------------------------------------------------------------------------------------------------ plants
def test_first_order_step_response_matches_closed_form():
    K, tau, dt = 2.0, 3.0, 0.5
    plant = LTIPlant.from_transfer_function([K], [tau, 1.0], dt=dt)
    t = np.arange(41) * dt
    np.testing.assert_allclose(plant.step_response(40), K * (1 - np.exp(-t / tau)), atol=1e-12)
    delayed = LTIPlant.from_transfer_function([K], [tau, 1.0], dt=dt, delay=3)
    np.testing.assert_allclose(delayed.step_response(40)[3:], plant.step_response(37), atol=1e-12)
    assert np.all(delayed.step_response(40)[:4] == 0)


def test_second_order_step_response_matches_closed_form():
    K, wn, zeta, dt = 1.5, 2.0, 0.3, 0.1
    plant = LTIPlant.from_transfer_function([K * wn**2], [1.0, 2 * zeta * wn, wn**2], dt=dt)
    t = np.arange(101) * dt
    wd = wn * np.sqrt(1 - zeta**2)
    closed = K * (1 - np.exp(-zeta * wn * t) / np.sqrt(1 - zeta**2) * np.sin(wd * t + np.arccos(zeta)))
    np.testing.assert_allclose(plant.step_response(100), closed, atol=1e-10)
    assert plant.dc_gain == pytest.approx(K)


def test_transfer_function_is_right_for_higher_orders():
    """The original's -tr(A^k)/k denominator was wrong for order > 1; ss2tf gives the characteristic polynomial."""
    rng = np.random.default_rng(3)
    for order in range(1, 6):
        plant = random_plant(order, rng, max_delay=5, max_noise=0.1)
        num, den = plant.transfer_function()
        np.testing.assert_allclose(den, np.poly(plant.eigenvalues).real, rtol=1e-8, atol=1e-10)
        assert np.all((plant.eigenvalues.real >= -5) & (plant.eigenvalues.real <= -0.1))
        assert np.polyval(num, 0) / np.polyval(den, 0) == pytest.approx(plant.dc_gain)
        assert 0.7 <= plant.dc_gain <= 1.4 and 0 <= plant.delay <= 5 and 0 <= plant.noise_std <= 0.1
        assert plant.step_response(400)[-1] == pytest.approx(plant.dc_gain, rel=1e-3)
        assert LTIPlant.from_dict(plant.to_dict()).step_response(30) == pytest.approx(plant.step_response(30))


def test_unstable_plants_are_refused():
    unstable = LTIPlant.from_transfer_function([1.0], [1.0, -0.5], name="runaway")
    assert not unstable.is_stable
    with pytest.raises(UnstablePlantError, match="runaway: a stable plant is required"):
        tune_pid(unstable)
    with pytest.raises(UnstablePlantError):
        LQG(unstable)
    with pytest.raises(UnstablePlantError):
        run_closed_loop(unstable, BangBang(), np.full(10, 0.5))
    with pytest.raises(UnstablePlantError, match="strictly negative"):
        random_plant(2, np.random.default_rng(0), eig_range=(-1.0, 0.5))


# ------------------------------------------------------------------------------------------------ controllers / loop
def test_controllers_follow_a_setpoint_schedule():
    rng = np.random.default_rng(0)
    r = setpoint_schedule(200, [0.5, -0.3])
    for order in (1, 3, 5):
        plant = random_plant(order, rng, max_delay=2)
        results, finals = {}, {}
        for controller in (BangBang(seed=1), tune_pid(plant), LQG(plant)):
            traj = run_closed_loop(plant, controller, r)
            results[controller.name], finals[controller.name] = episode_metrics(traj), traj.y_true[-1]
            assert results[controller.name]["failed"] == 0 and np.all(np.abs(traj.u) <= 1.0)
            assert traj.frames().shape == (2, 200)
        for name in ("pid", "lqg"):  # the tuned controllers settle on both setpoints; bang-bang chatters
            assert abs(r[-1] - finals[name]) < 0.02
            assert results[name]["iae"] < results["bang-bang"]["iae"]


def test_pid_first_order_loop_closed_form():
    """A P controller on K/(tau s + 1): the discrete closed loop settles at K kp r / (1 + K kp)."""
    plant = LTIPlant.from_transfer_function([1.0], [2.0, 1.0], dt=0.5)
    traj = run_closed_loop(plant, PID(kp=2.0, ki=0.0, kd=0.0, dt=0.5, u_max=10), np.full(80, 0.6), u_max=10)
    assert traj.y_true[-1] == pytest.approx(2.0 * 0.6 / 3.0, rel=1e-6)


def test_metrics_and_bad_input():
    plant = LTIPlant.from_transfer_function([1.0], [1.0, 1.0], dt=0.5)
    traj = run_closed_loop(plant, PID(kp=0.0, ki=1.0, kd=0.0, dt=0.5), setpoint_schedule(100, [0.5]))
    m = episode_metrics(traj)
    assert m["failed"] == 0 and m["iae"] > 0 and m["ise"] < m["iae"] and m["effort"] > 0
    assert 0 < m["settling_time"] < 50
    with pytest.raises(ValueError, match="outside the normalised range"):
        setpoint_schedule(100, [0.5, 1.2])
    with pytest.raises(ValueError, match="outside the normalised range"):
        run_closed_loop(plant, BangBang(), np.full(10, -1.5))

    class Broken(BangBang):
        def __call__(self, y, preview):
            return float("nan")

    with pytest.raises(ClosedLoopDivergenceError, match="non-finite action"):
        run_closed_loop(plant, Broken(), np.full(10, 0.5))
    wild = PID(kp=-50.0, ki=0.0, kd=0.0, dt=0.5, u_max=1e6)  # positive feedback: the loop diverges
    with pytest.raises(ClosedLoopDivergenceError, match="diverged"):
        run_closed_loop(plant, wild, np.full(200, 0.5), u_max=1e6, raise_on_divergence=True)
    traj = run_closed_loop(plant, wild, np.full(200, 0.5), u_max=1e6)
    assert traj.diverged and episode_metrics(traj)["failed"] == 1.0


# ------------------------------------------------------------------------------------------------ datasets
@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    from pixelbytes.control.datasets import build_control_dataset

    out = tmp_path_factory.mktemp("control") / "data"
    options = {"orders": (1, 2), "controllers": ("bang-bang", "lqg"), "steps": 30, "max_delay": 2, "max_noise": 0.05}
    summary = build_control_dataset(out, n_plants=4, seed=1, test_fraction=0.25, **options)
    return out, summary


def control_tok():
    from pixelbytes.control.recipe import control_tokenizer

    return control_tokenizer()


def test_dataset_folder_split_and_tokenizer_round_trip(tiny_dataset):
    import json

    from pixelbytes.control.datasets import load_plants, read_wav
    from pixelbytes.data.loading import load_samples, tokenize_samples

    out, summary = tiny_dataset
    assert (summary["train_plants"], summary["test_plants"], summary["train_rows"], summary["test_rows"]) == (
        3,
        1,
        6,
        2,
    )
    plants = json.loads((out / "plants.json").read_text())["plants"]
    assert sorted(p["split"] for p in plants) == ["test", "train", "train", "train"]
    test_plants = load_plants(out, "test")
    assert len(test_plants) == 1 and test_plants[0].is_stable
    rows = [json.loads(line) for line in (out / "train" / "metadata.jsonl").read_text().splitlines()]
    header, row = rows[0]["text"].splitlines()
    assert header.startswith("order,numerator,denominator") and ",bang-bang," in row
    clip, rate = read_wav(out / "train" / rows[0]["audio"])
    assert rate == 16000 and clip.shape == (2, 4 + 30) and np.all(clip[:, :4] == 0)  # lead-in rest frames
    tok = control_tok()
    ids = tok(audio=clip.astype(np.float32))["input_ids"]
    assert ids[-2:] == [1, 2] and len(ids) == 2 * 34 + 2
    decoded = tok.decode_multimodal(ids).audio
    np.testing.assert_allclose(decoded, clip, atol=1 / 140 + 1e-4)  # within half a level step
    samples = load_samples(out / "train")  # what `pixelbytes train --dataset DIR/train` reads
    tokenized = tokenize_samples(samples, tok)
    assert len(tokenized) == 6
    assert list(tokenized[0]["input_ids"][-70:]) == ids  # the audio block is the clip


def test_push_control_dataset_with_fake_api(tiny_dataset, tmp_path):
    from types import SimpleNamespace

    from pixelbytes.control.datasets import push_control_dataset
    from pixelbytes.data.loading import load_samples, tokenize_samples

    class FakeApi:
        def __init__(self):
            self.repos, self.commits = [], []

        def create_repo(self, repo_id, **kwargs):
            self.repos.append({"repo_id": repo_id, **kwargs})

        def create_commit(self, repo_id, operations, **kwargs):
            files = {op.path_in_repo: op.path_or_fileobj for op in operations}
            self.commits.append({"repo_id": repo_id, "files": files, **kwargs})
            return SimpleNamespace(commit_url="https://huggingface.co/datasets/me/ctl/commit/0")

    out, _ = tiny_dataset
    api = FakeApi()
    push_control_dataset(out, "me/ctl", api=api)
    assert api.repos[0]["repo_type"] == "dataset" and api.commits[0]["repo_type"] == "dataset"
    files = api.commits[0]["files"]
    assert set(files) == {"data/train-00000-of-00001.parquet", "data/test-00000-of-00001.parquet", "plants.json",
                          "README.md"}  # fmt: skip
    parquet = tmp_path / "train.parquet"
    parquet.write_bytes(files["data/train-00000-of-00001.parquet"])
    import datasets

    assert isinstance(datasets.Dataset.from_parquet(str(parquet)).features["audio"], datasets.Audio)
    tok = control_tok()
    hub_ids = [list(row) for row in tokenize_samples(load_samples(parquet), tok)["input_ids"]]
    folder_ids = [list(row) for row in tokenize_samples(load_samples(out / "train"), tok)["input_ids"]]
    assert len(hub_ids) == 6 and hub_ids == folder_ids


# ------------------------------------------------------------------------------------------------ model controller
def tiny_control_model(objective):
    import torch

    from pixelbytes import PxByConfig, PxBySequenceModel

    torch.manual_seed(0)
    config = PxByConfig.from_tokenizer(control_tok(), embed_size=12, hidden_size=16, num_hidden_layers=1,
                                       objective=objective, bidirectional=objective == "diffusion")  # fmt: skip
    return PxBySequenceModel(config).eval()


@pytest.mark.parametrize("objective", ["diffusion", "next_token"])
def test_tiny_closed_loop_end_to_end(objective, tmp_path):
    from pixelbytes.control.model_controller import (
        ModelController,
        baseline_factories,
        evaluate_controllers,
        format_table,
        plot_trajectories,
    )

    model, tok = tiny_control_model(objective), control_tok()
    plant = random_plant(2, np.random.default_rng(0))
    controller = ModelController(model, tok, horizon=3, history=8, num_candidates=5, num_steps=2)
    assert controller.mode == ("infill" if objective == "diffusion" else "score")
    traj = run_closed_loop(plant, controller, setpoint_schedule(12, [0.4, -0.2]))
    levels = np.asarray(tok.vocabulary.levels_array)
    assert traj.u.shape == (12,) and np.all(np.isin(np.round(traj.u, 9), np.round(levels, 9)))  # actions are levels
    assert len(controller._frames) == 4 + 11  # lead-in + completed frames
    results = evaluate_controllers([plant], {"model": lambda p: controller, **baseline_factories()}, steps=12)
    assert set(results["summary"]) == {"model", "pid", "lqg", "bang-bang"}
    assert "| model |" in format_table(results["summary"])
    png = plot_trajectories(results["trajectories"][plant.name], tmp_path / "loop.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_model_controller_bad_input():
    from pixelbytes import ActionPixelBytesTokenizer, PxByConfig, PxBySequenceModel, v1_vocabulary
    from pixelbytes.control.model_controller import ModelController

    diffusion, causal, tok = tiny_control_model("diffusion"), tiny_control_model("next_token"), control_tok()
    no_levels = ActionPixelBytesTokenizer(vocabulary=v1_vocabulary())
    v1_model = PxBySequenceModel(PxByConfig.from_tokenizer(no_levels, embed_size=12, hidden_size=16,
                                                           num_hidden_layers=1))  # fmt: skip
    with pytest.raises(ValueError, match="no action levels"):
        ModelController(v1_model, no_levels)
    minmax = ActionPixelBytesTokenizer(vocabulary=tok.vocabulary, audio_channels=2, audio_normalization="minmax")
    with pytest.raises(ValueError, match="audio_normalization='none'"):
        ModelController(causal, minmax)
    with pytest.raises(ValueError, match="needs an objective='diffusion' model"):
        ModelController(causal, tok, mode="infill")
    with pytest.raises(ValueError, match="causal"):
        ModelController(diffusion, tok, mode="score")
    controller = ModelController(causal, tok)
    with pytest.raises(ValueError, match="not finite"):
        controller(float("nan"), np.array([0.5]))


def test_cli_build_dataset(tmp_path, capsys):
    import json

    from pixelbytes.cli import main

    out = tmp_path / "ds"
    assert main(["control", "build-dataset", "--output-dir", str(out), "--n-plants", "2", "--steps", "10",
                 "--controllers", "pid", "--no-text"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["train_rows"] == 1
    assert "text" not in json.loads((out / "train" / "metadata.jsonl").read_text().splitlines()[0])
    with pytest.raises(SystemExit):
        main(["control", "evaluate"])  # --dataset / --output-dir are required


def test_train_recipe_trains_on_the_control_vocabulary(tiny_dataset, tmp_path):
    from pixelbytes import ActionPixelBytesTokenizer, PxBySequenceModel, control_vocabulary
    from pixelbytes.control.recipe import train_recipe

    out, _ = tiny_dataset
    metrics = train_recipe(out, tmp_path / "model", objective="next_token", max_steps=2, batch_size=2, seq_length=64)
    assert metrics["train_loss"] > 0
    tokenizer = ActionPixelBytesTokenizer.from_pretrained(tmp_path / "model")
    assert tokenizer.vocabulary.fingerprint == control_vocabulary().fingerprint
    assert tokenizer.audio_normalization == "none"
    model = PxBySequenceModel.from_pretrained(tmp_path / "model")  # checks the vocabulary saved beside it
    assert model.config.vocab_fingerprint == control_vocabulary().fingerprint
