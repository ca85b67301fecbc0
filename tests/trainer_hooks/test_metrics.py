import pytest
import torch

from xdrl.trainer_hooks._metrics import scalarize, stats


def test_stats_modes():
    values = torch.tensor([1.0, 2.0, 6.0])
    assert stats("m", values, None) == {"m_min": 1.0, "m_mean": 3.0, "m_max": 6.0}
    assert stats("m", values, False) == {"m": 3.0}
    assert stats("m", torch.tensor([5.0]), True) == {"m_min": 5.0, "m_mean": 5.0, "m_max": 5.0}
    assert stats("m", torch.tensor([5.0]), None) == {"m": 5.0}
    assert stats("m", torch.tensor([]), None) == {}


def test_scalarize_vector_and_mismatch():
    rewards = torch.tensor([[1.0, -1.0], [3.0, -2.0]])
    scalar, objectives = scalarize(rewards, [2.0, 1.0], owner="t")
    assert scalar.tolist() == [1.0, 4.0]
    assert objectives.tolist() == rewards.tolist()
    scalar, objectives = scalarize(rewards, None, owner="t")
    assert scalar is None and objectives is not None
    with pytest.raises(ValueError, match=r"has 3 entries but the reward has 2 objectives"):
        scalarize(rewards, [1.0, 1.0, 1.0], owner="t")
    scalar, objectives = scalarize(torch.tensor([[2.0]]), None, owner="t")
    assert scalar.tolist() == [2.0] and objectives is None
