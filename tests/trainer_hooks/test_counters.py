import torch
from tensordict import TensorDict

from xdrl.trainer_hooks import LoggingCountersHook


def test_counts_frames_with_frame_skip_and_mask():
    hook = LoggingCountersHook(frame_skip=4)
    masked = TensorDict({"collector": {"mask": torch.tensor([[True, True, False], [True, False, False]])}}, [2, 3])
    assert hook(masked) == {"counters/current_frames": 12, "counters/total_frames": 12, "counters/iter": 1}
    assert hook(TensorDict(batch_size=[5])) == {
        "counters/current_frames": 20,
        "counters/total_frames": 32,
        "counters/iter": 2,
    }


def test_state_round_trip_continues_counting():
    hook = LoggingCountersHook()
    hook(TensorDict(batch_size=[10]))
    restored = LoggingCountersHook()
    restored.load_state_dict(hook.state_dict())
    assert restored(TensorDict(batch_size=[10]))["counters/total_frames"] == 20
    assert restored.iteration == 2
