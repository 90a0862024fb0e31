"""The executor: failing tasks are reported and do not stop it; feedback becomes judgments."""

import threading

import numpy as np
import pytest

from augnes_jax.executor import Executor, TaskFailure
from augnes_jax.judgments import JudgmentError, read_judgments


def test_a_failing_task_is_reported_and_later_tasks_still_run():
    seen: list[TaskFailure] = []
    with Executor(on_error=seen.append) as ex:
        ok1 = ex.submit(lambda: 1, name="first")
        bad = ex.submit(lambda: 1 / 0, name="divide")
        ok2 = ex.submit(lambda x, y=0: x + y, 2, y=3, name="after")
        assert ok1.result() == 1 and ok2.result() == 5
        with pytest.raises(ZeroDivisionError):
            bad.result()
    assert [f.name for f in ex.failures] == ["divide"] and seen == ex.failures
    assert "ZeroDivisionError: division by zero" in ex.failures[0].traceback
    assert isinstance(ex.failures[0].exception, ZeroDivisionError)


def test_failures_are_logged_without_a_handler(caplog):
    with Executor() as ex:
        ex.submit(lambda: [][1], name="index")
    assert "task index failed" in caplog.text and "IndexError" in caplog.text
    assert len(ex.failures) == 1


def test_shutdown_finishes_or_cancels_queued_tasks_never_drops_them():
    gate = threading.Event()
    done: list[int] = []
    ex = Executor(max_workers=1)
    ex.submit(gate.wait, name="blocker")
    futures = [ex.submit(done.append, i, name=f"t{i}") for i in range(3)]
    gate.set()
    ex.shutdown(wait=True)
    assert done == [0, 1, 2] and all(f.done() for f in futures) and ex.cancelled == []

    gate2 = threading.Event()
    started = threading.Event()
    ex2 = Executor(max_workers=1)
    ex2.submit(lambda: (started.set(), gate2.wait()), name="blocker")
    queued = [ex2.submit(done.append, i, name=f"q{i}") for i in range(3)]
    started.wait()
    stopper = threading.Thread(target=ex2.shutdown, kwargs={"cancel_pending": True})
    stopper.start()
    for _ in range(10_000):  # the blocker holds the only worker until all three are cancelled
        if len(ex2.cancelled) == 3:
            break
        threading.Event().wait(0.001)
    gate2.set()
    stopper.join()
    assert ex2.cancelled == ["q0", "q1", "q2"] and all(f.cancelled() for f in queued)
    assert done == [0, 1, 2]
    with pytest.raises(RuntimeError, match="shut down"):
        ex2.submit(print)


def test_world_model_training_is_a_named_task():
    with Executor() as ex:
        fut = ex.submit_world_model_training(lambda steps, lr=0.1: steps * lr, 10, lr=0.5)
        assert fut.result() == 5.0
        ex.submit_world_model_training(lambda: (_ for _ in ()).throw(ValueError("nan loss")))
    assert [f.name for f in ex.failures] == ["world_model_training"]


def test_store_feedback_computes_regret_and_advantage_when_stored(tmp_path):
    path = tmp_path / "run" / "judgments.jsonl"
    with Executor(path) as ex:
        rec = ex.store_feedback(goal_id=3, reward=7.5, optimal_reward=10.0, baseline_reward=2.0,
                                episode=12, variant="h64-b10000-s0", epoch=2,
                                oracle="value_iteration", run="r1", hidden_dim=64, note="x")  # fmt: skip
        assert rec["regret"] == 2.5 and rec["advantage"] == 5.5
        # visible on disk as soon as store_feedback returns (appended and fsynced)
        assert read_judgments(path).goal_id.tolist() == [3]
        ex.store_feedback(goal_id=0, reward=1.0, optimal_reward=1.0, baseline_reward=None, episode=13)
    j = read_judgments(path)
    assert j.goal_id.tolist() == [3, 0]
    np.testing.assert_array_equal(j.regret, [2.5, 0.0])
    np.testing.assert_array_equal(j.advantage, [5.5, np.nan])
    assert j.variant == ["h64-b10000-s0", None] and j.hidden_dim.tolist() == [64, -1]
    assert j.oracle[0] == "value_iteration" and dict(j.extra[0]) == {"note": "x"}


def test_store_feedback_batch_is_vectorised_and_bad_feedback_writes_nothing(tmp_path):
    path = tmp_path / "judgments.jsonl"
    reward = np.array([1.0, 2.0, 3.0], np.float32)
    optimal = np.array([4.0, 4.0, 4.0], np.float32)
    baseline = np.array([0.0, 1.0, 5.0], np.float32)
    with Executor(path) as ex:
        recs = ex.submit_feedback_batch(goal_id=np.array([0, 1, 1]), reward=reward,
                                        optimal_reward=optimal, baseline_reward=baseline,
                                        variant="v", seed=1, epoch=0).result()  # fmt: skip
        assert [r["regret"] for r in recs] == [3.0, 2.0, 1.0]
        with pytest.raises(JudgmentError, match="reward must be finite"):
            ex.store_feedback(goal_id=0, reward=float("nan"), optimal_reward=1.0,
                              baseline_reward=0.0, episode=3)  # fmt: skip
        with pytest.raises(ValueError, match=r"reward\[0\]"):
            ex.store_feedback_batch(goal_id=np.array([0]), reward=np.array([np.inf]),
                                    optimal_reward=np.array([1.0]))  # fmt: skip
    j = read_judgments(path)
    assert j.goal_id.tolist() == [0, 1, 1] and j.episode.tolist() == [0, 1, 2]
    np.testing.assert_array_equal(j.advantage, [1.0, 1.0, -2.0])
    assert j.seed.tolist() == [1, 1, 1]


def test_feedback_needs_a_judgments_path():
    with Executor() as ex, pytest.raises(RuntimeError, match="no judgments_path"):
        ex.store_feedback(goal_id=0, reward=1.0, optimal_reward=1.0, baseline_reward=None, episode=0)


def test_write_pipeline_runs_tasks_in_order_and_raises_a_failure_where_it_waits():
    from augnes_jax.write_pipeline import WritePipeline

    order: list[str] = []
    gate = threading.Event()
    with Executor() as ex:
        pipe = WritePipeline(ex, overlap=True)
        pipe.run(lambda: (gate.wait(), order.append("epoch 0")), name="epoch 0")
        order.append("caller")  # the caller runs on while epoch 0 is pending
        gate.set()
        pipe.run(lambda: order.append("epoch 1"), name="epoch 1")  # waits for epoch 0 first
        pipe.run(lambda: [][0], name="epoch 2")
        with pytest.raises(IndexError):
            pipe.wait()
        pipe.wait()  # a failure is raised once
    assert order == ["caller", "epoch 0", "epoch 1"]
    assert [f.name for f in ex.failures] == ["epoch 2"]


def test_write_pipeline_without_overlap_runs_each_task_before_returning():
    from augnes_jax.write_pipeline import WritePipeline

    order: list[int] = []
    with Executor() as ex:
        pipe = WritePipeline(ex, overlap=False)
        pipe.run(lambda: order.append(threading.get_ident()), name="epoch 0")
        assert order == [threading.get_ident()] and not pipe.overlap
        with pytest.raises(ZeroDivisionError):
            pipe.run(lambda: 1 / 0, name="epoch 1")
    assert not WritePipeline(None, overlap=True).overlap  # no executor: nothing to overlap on
