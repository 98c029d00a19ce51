"""The fast agent and memory are keras-rl2's algorithm: proven against stock keras-rl2."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from rltrain import compat
from rltrain.config import compose_config

compat.load()
from rl.memory import SequentialMemory  # noqa: E402

from rltrain.agent import build_agent  # noqa: E402
from rltrain.fast import FastDQNAgent, FastSequentialMemory, Streams  # noqa: E402
from rltrain.train import train  # noqa: E402


@pytest.fixture(autouse=True)
def fresh_graph() -> None:
    """Each test's agents in a new default graph: a graph that grows slows every build."""
    compat.load().backend.clear_session()


def fill(memories: list, n: int, seed: int, episode_len: tuple[int, int] = (3, 12)) -> None:
    """Append the same random episodes (4-d observations) to every memory."""
    rng = np.random.default_rng(seed)
    left = rng.integers(*episode_len)
    for _ in range(n):
        left -= 1
        obs = rng.normal(size=4).astype(np.float32)
        action, reward, terminal = int(rng.integers(2)), float(rng.normal()), bool(left == 0)
        for memory in memories:
            memory.append(obs, action, reward, terminal)
        if terminal:
            left = rng.integers(*episode_len)


@pytest.mark.parametrize("window_length", [1, 3])
@pytest.mark.parametrize("limit", [50, 1000])  # 50: the ring buffer has wrapped around
def test_memory_returns_same_experiences(window_length: int, limit: int) -> None:
    stock = SequentialMemory(limit=limit, window_length=window_length)
    fast = FastSequentialMemory(limit=limit, window_length=window_length,
                                streams=Streams(0, "keras-rl"))
    fill([stock, fast], 300, seed=window_length)
    assert fast.nb_entries == stock.nb_entries == min(300, limit)
    for trial in range(20):
        # The same seed on both sides (stock: the global streams; fast: its own streams):
        # same draws, same resampling after terminals.
        random.seed(trial)
        np.random.seed(trial)
        expected = stock.sample(32)
        random.seed(trial + 1)  # the fast memory must not read the global streams
        np.random.seed(trial + 1)
        fast.streams = Streams(trial, "keras-rl")
        got = fast.sample(32)
        for e, g in zip(expected, got, strict=True):
            np.testing.assert_array_equal(np.array(g.state0), np.array(e.state0))
            np.testing.assert_array_equal(np.array(g.state1), np.array(e.state1))
            assert (g.action, g.terminal1) == (e.action, e.terminal1)
            assert g.reward == pytest.approx(e.reward, rel=1e-6)
    idxs = list(range(window_length, min(300, limit) - 1, 7))[:32]  # explicit indexes
    random.seed(1)
    expected = stock.sample(len(idxs), idxs)
    fast.streams = Streams(1, "keras-rl")
    for e, g in zip(expected, fast.sample(len(idxs), idxs), strict=True):
        np.testing.assert_array_equal(np.array(g.state0), np.array(e.state0))


@pytest.mark.parametrize("limit", [50, 1000])
@pytest.mark.parametrize("bootstrap", [False, True])
def test_packed_rows_are_the_sampled_transitions(limit: int, bootstrap: bool) -> None:
    """The rows written at append time (window_length 1) are the transitions
    ``sample_arrays`` gathers at sampling time, packed, after the ring has wrapped too."""
    memory = FastSequentialMemory(limit=limit, window_length=1)
    rng = np.random.default_rng(4)
    for _ in range(300):
        end = bool(rng.random() < 0.1)
        memory.append(rng.normal(size=3).astype(np.float32), int(rng.integers(2)),
                      float(rng.normal()), end, truncated=end and bool(rng.random() < 0.5))
    for seed in range(10):
        memory.streams = Streams(seed)
        s0, a, r, s1, t1 = memory.sample_arrays(64, bootstrap_on_truncation=bootstrap)
        memory.streams = Streams(seed)
        rows = memory.sample_rows(64, bootstrap_on_truncation=bootstrap)
        np.testing.assert_array_equal(rows, np.concatenate(
            [s0.reshape(64, -1), s1.reshape(64, -1), a[:, None], r[:, None], (~t1)[:, None]],
            axis=1, dtype=np.float32))


@pytest.mark.parametrize("sampling", ["fast", "keras-rl"])
@pytest.mark.parametrize("window_length", [1, 3])
def test_sampling_is_uniform_over_valid_transitions(sampling: str, window_length: int) -> None:
    """Both samplers draw every valid transition (never one that starts after a terminal)
    equally often, distinct within a batch where nothing was drawn again."""
    from scipy.stats import chisquare

    memory = FastSequentialMemory(limit=400, window_length=window_length,
                                  streams=Streams(5, sampling))
    fill([memory], 400, seed=3)
    counts = np.zeros(memory.nb_entries + 1, dtype=np.int64)
    for _ in range(600):
        idx = memory.draw_indexes(32)
        assert not memory.terminals[memory._slots(idx - 2)].any()
        counts += np.bincount(idx, minlength=len(counts))
    valid = [i for i in range(window_length + 1, memory.nb_entries)
             if not memory.terminals[memory._slots(np.int64(i - 2))]]
    assert counts[[i for i in range(len(counts)) if i not in valid]].sum() == 0
    assert chisquare(counts[valid]).pvalue > 1e-3  # uniform (fails for a biased draw)


def test_fast_sampling_is_seeded_and_not_keras_rl_stream() -> None:
    def draws(sampling: str, seed: int) -> np.ndarray:
        memory = FastSequentialMemory(limit=400, window_length=1, streams=Streams(seed, sampling))
        fill([memory], 400, seed=3)
        return np.concatenate([memory.draw_indexes(32) for _ in range(5)])

    np.testing.assert_array_equal(draws("fast", 1), draws("fast", 1))
    assert not np.array_equal(draws("fast", 1), draws("fast", 2))
    assert not np.array_equal(draws("fast", 1), draws("keras-rl", 1))


def test_truncation_bootstraps_only_when_asked() -> None:
    memory = FastSequentialMemory(limit=100, window_length=1)
    for t in range(10):  # one episode truncated at t=9, then the extra entry, then more
        memory.append(np.full(4, t, np.float32), 0, 1.0, t == 9, truncated=t == 9)
    memory.append(np.full(4, 10, np.float32), 0, 0.0, False)
    for t in range(5):
        memory.append(np.full(4, 100 + t, np.float32), 1, 1.0, False)
    idx = [9]  # the transition 9 -> 10: the last one of the truncated episode
    _, _, _, s1, t1 = memory.sample_arrays(1, idx)
    assert s1[0, 0, 0] == 10 and t1[0]  # keras-rl2: truncation is a terminal
    _, _, _, s1, t1 = memory.sample_arrays(1, idx, bootstrap_on_truncation=True)
    assert s1[0, 0, 0] == 10 and not t1[0]  # bootstraps from the real last state
    for seed in range(20):  # 10 -> 100 links two episodes: it is always drawn again
        memory.streams = Streams(seed)
        s0, _, _, s1, _ = memory.sample_arrays(1, [10], bootstrap_on_truncation=True)
        assert (s0[0, 0, 0], s1[0, 0, 0]) != (10, 100)


def agents(*overrides: str) -> tuple:
    """A stock and a fast agent with the same weights and the same replay contents."""
    cfg = compose_config(["agent.nb_steps_warmup=10", *overrides])
    stock = build_agent(compose_config([*cfg_overrides(cfg), "agent.impl=keras-rl"]).agent,
                        (4,), 2)
    fast = build_agent(compose_config([*cfg_overrides(cfg), "agent.impl=fast"]).agent, (4,), 2)
    assert isinstance(fast, FastDQNAgent)
    fast.model.set_weights(stock.model.get_weights())
    fast.target_model.set_weights(stock.target_model.get_weights())
    fast.sync_weights()
    fill([stock.memory, fast.memory], 200, seed=1)
    for agent in (stock, fast):
        agent.training = True
        agent.step = 100
        agent.recent_observation = np.zeros(4, np.float32)
        agent.recent_action = 0
    return stock, fast


def cfg_overrides(cfg) -> list[str]:
    a = cfg.agent
    return [f"agent.target_model_update={a.target_model_update}",
            f"agent.enable_double_dqn={a.enable_double_dqn}",
            f"agent.enable_dueling_network={a.enable_dueling_network}",
            f"agent.dueling_type={a.dueling_type}", f"agent.delta_clip={a.delta_clip}",
            "agent.nb_steps_warmup=10"]


HARD = "agent.target_model_update=3"
VARIANTS = {  # name: (overrides, soft target update?)
    "soft": ([], True),
    "soft-double-dueling": (["agent.enable_double_dqn=true",
                             "agent.enable_dueling_network=true"], True),
    "hard": ([HARD], False),
    "hard-double": ([HARD, "agent.enable_double_dqn=true"], False),
    "hard-dueling": ([HARD, "agent.enable_dueling_network=true"], False),
    "hard-dueling-max-huber": ([HARD, "agent.enable_dueling_network=true",
                                "agent.dueling_type=max", "agent.delta_clip=1.0"], False),
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_train_steps_match_stock(variant: str) -> None:
    """Same weights, same batches: the same losses, metrics and weights after each step.

    Stock keras-rl2 bolts the soft target update onto the optimizer with no ordering
    against Adam's update, so it reads the online weights from before or after this
    step's update, whichever TensorFlow runs first (both happen here). The fast agent
    reads them before. The difference is at most tau * one Adam step (~1e-5) per step,
    hence a looser tolerance for soft updates; hard updates are compared tightly.
    """
    overrides, soft = VARIANTS[variant]
    rtol, atol = (1e-3, 1e-4) if soft else (1e-5, 1e-6)
    stock, fast = agents(*overrides)
    for step in range(100, 106):  # several steps: Adam's moments and the target evolve too
        metrics = []
        for agent in (stock, fast):
            agent.step = step
            random.seed(step)  # stock draws from the global streams, fast from its own
            np.random.seed(step)
            fast.memory.streams = Streams(step, "keras-rl")
            metrics.append(agent.backward(0.5, terminal=False))
        np.testing.assert_allclose(metrics[1], metrics[0], rtol=10 * rtol, atol=atol)
        for mine, theirs in [(fast.model, stock.model), (fast.target_model, stock.target_model)]:
            for a, b in zip(mine.get_weights(), theirs.get_weights(), strict=True):
                np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)
    state = [np.ones(4, np.float32)]
    np.testing.assert_allclose(fast.compute_q_values(state), stock.compute_q_values(state),
                               rtol=10 * rtol, atol=10 * atol)


@pytest.mark.parametrize("seed", [0, 1])
def test_same_seed_same_episodes_as_stock(tiny, seed: int) -> None:
    """Same random calls and the same arithmetic: whole episodes (hundreds of training
    steps) come out identical, until float rounding flips one greedy action."""
    overrides = ["train.nb_steps=600", "train.eval_interval=0", "train.checkpoint_interval=0",
                 "train.test_episodes=0", f"seed={seed}", "agent.memory.sampling=keras-rl"]
    stock = train(tiny("agent.impl=keras-rl", *overrides), Path("stock"))
    fast = train(tiny("agent.impl=fast", *overrides), Path("fast"))
    assert len(stock.episode_rewards) > 15
    assert fast.episode_rewards[:15] == stock.episode_rewards[:15]


@pytest.mark.parametrize("variant", ["soft", "soft-double-dueling", "hard"])
def test_gradient_steps_are_consecutive_train_calls(variant: str) -> None:
    """``agent.gradient_steps=3``: one train call, one session call, does what three train
    calls of one step each do on the same three batches (weights, target, Adam's state),
    and reports their mean loss and metrics."""
    overrides = [*VARIANTS[variant][0], "agent.memory_interval=1000"]  # nothing appended
    one = build_agent(compose_config([*overrides, "agent.gradient_steps=1"]).agent, (4,), 2)
    three = build_agent(compose_config([*overrides, "agent.gradient_steps=3"]).agent, (4,), 2)
    three.model.set_weights(one.model.get_weights())
    three.target_model.set_weights(one.target_model.get_weights())
    three.sync_weights()
    fill([one.memory, three.memory], 200, seed=2)
    for agent in (one, three):
        agent.training, agent.step = True, 101
        agent.recent_observation, agent.recent_action = np.zeros(4, np.float32), 0
        agent.memory.streams = Streams(7)
    for _ in range(2):  # a second round: Adam's moments and step count carried over alike
        singles = [one.backward(0.5, terminal=False) for _ in range(3)]
        together = three.backward(0.5, terminal=False)
        np.testing.assert_allclose(together[:3], np.mean(singles, axis=0)[:3], rtol=1e-5)
        for mine, theirs in [(three.model, one.model), (three.target_model, one.target_model)]:
            for a, b in zip(mine.get_weights(), theirs.get_weights(), strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    state = [np.ones(4, np.float32)]
    np.testing.assert_allclose(three.compute_q_values(state), one.compute_q_values(state),
                               rtol=1e-5)


SIDE_BY_SIDE = {  # name: (overrides, env)
    "cartpole": (["agent.model.units=32", "agent.model.layers=2"], "CartPole-v1"),
    "lunarlander-dueling-avg": (["agent.enable_dueling_network=true"], "LunarLander-v3"),
    "lunarlander-dueling-max": (["agent.enable_dueling_network=true", "agent.dueling_type=max",
                             "agent.model.units=64"], "LunarLander-v3"),
}


@pytest.mark.parametrize("variant", SIDE_BY_SIDE)
def test_episodes_side_by_side_are_the_episodes_one_after_another(variant: str) -> None:
    """One batched forward for the running episodes gives each row the Q-values, bit for
    bit, that the agent computes for it alone, so greedy episodes played side by side
    are the episodes played one after another."""
    from rltrain.envs import make_env
    from rltrain.loop import play_side_by_side, run_episodes

    overrides, env_id = SIDE_BY_SIDE[variant]
    cfg = compose_config([f"env.id={env_id}", *overrides])
    envs = [make_env(cfg.env, 0) for _ in range(6)]
    agent = build_agent(cfg.agent, envs[0].observation_space.shape,
                        int(envs[0].action_space.n))
    rng = np.random.default_rng(3)  # weights far from the initial ones: varied episodes
    agent.model.set_weights([w + rng.normal(scale=0.5, size=w.shape).astype(np.float32)
                             for w in agent.model.get_weights()])
    agent.sync_weights()
    assert agent.plays_side_by_side
    states = rng.normal(scale=2.0, size=(200, *envs[0].observation_space.shape))
    alone = np.stack([agent.compute_q_values([s]) for s in states])
    np.testing.assert_array_equal(agent._q(states.astype(np.float32)[:, None])[:, 0], alone)
    np.testing.assert_array_equal(agent.greedy_actions(states), alone.argmax(axis=1))
    expected = run_episodes(agent, envs[0], 6, seed=100)
    assert len(set(expected)) > 1  # the episodes differ: a real comparison
    assert play_side_by_side(agent, envs, seed=100) == expected


def test_a_drawing_test_policy_plays_one_episode_after_another() -> None:
    """An annealed test policy draws from the agent's stream per step: its episodes are
    not played side by side (the draws would interleave)."""
    agent = build_agent(compose_config(["agent.test_policy=annealed"]).agent, (4,), 2)
    assert not agent.plays_side_by_side


def test_side_by_side_evaluations_are_the_sequential_ones(tiny) -> None:
    """A training run's evaluations and final test are the same with
    ``train.eval_side_by_side`` on or off."""
    overrides = ["agent.impl=fast", "train.nb_steps=1500", "train.eval_interval=500",
                 "train.eval_episodes=4", "train.test_episodes=3", "train.keep_best=true"]
    results = [train(tiny(*overrides, f"train.eval_side_by_side={on}"), Path(f"run-{on}"))
               for on in ("true", "false")]
    assert len(results[0].evaluations) >= 3
    assert results[0].evaluations == results[1].evaluations
    assert results[0].test_rewards == results[1].test_rewards
    assert results[0].final_test_rewards == results[1].final_test_rewards
