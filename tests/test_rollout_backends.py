"""The contract every rollout backend keeps: one suite, run on each entry of BACKENDS.

A backend whose requirements are absent here (vllm without the package or a CUDA device) is
skipped, with the reason. The student is the shipped zoo model; the engine-backed samplers are
built once per backend, and every test hands them a fresh student through `sync`.
"""

import importlib.util
import subprocess
import sys

import pytest
import torch

from opdbench.chat import encode_prompt
from opdbench.errors import OpdbenchError
from opdbench.rollout import BACKENDS, Sampler, hf, left_pad, make_sampler
from opdbench.rollout import vllm as vllm_backend
from opdbench.zoo import load_model, load_tokenizer
from .helpers import sequence_logits

STUDENT = "zoo:student"
GROUP = [0, 0, 1, 1, 2, 2, 3, 3]  # of `prompts`: four prompts, each twice
MAX_NEW_TOKENS = 24  # the student's answers end in EOS after ~20 tokens: some rows stop, some reach it
# Recorded vs recomputed log-probs: hf runs the same float32 arithmetic on the same device; vLLM
# its own kernels on a GPU.
LOGP_TOLERANCE = {"hf": 1e-4, "vllm": 1e-2}


def unavailable(backend: str) -> str | None:
    """Why `backend` cannot run on this machine, or None."""
    return vllm_backend.missing_requirement() if backend == "vllm" else None


@pytest.fixture(scope="module", params=sorted(BACKENDS))
def backend(request):
    reason = unavailable(request.param)
    if reason:
        pytest.skip(reason)
    return request.param


@pytest.fixture(scope="module")
def sampler(backend):
    return make_sampler(backend, model_spec=STUDENT, dtype="float32")


@pytest.fixture
def model(sampler):
    """A fresh student, with the sampler synced to it (tests change its weights)."""
    student = load_model(STUDENT)
    sampler.sync(student)
    return student


@pytest.fixture(scope="module")
def zoo_tokenizer():
    return load_tokenizer(STUDENT)


@pytest.fixture(scope="module")
def prompts(zoo_tokenizer, math_task):
    """Four math prompts of different lengths, each twice (two samples of one prompt)."""
    return [encode_prompt(zoo_tokenizer, ex.prompt) for ex in math_task.examples("eval")[:4] for _ in range(2)]


def draw(sampler, model, prompts, tokenizer, seed=0, **kw):
    kw = {"max_new_tokens": MAX_NEW_TOKENS, "temperature": 1.0, "top_p": 1.0, **kw}
    return sampler.sample(model, prompts, eos_id=tokenizer.eos_token_id, pad_id=tokenizer.pad_token_id,
                          generator=torch.Generator().manual_seed(seed), group=GROUP, **kw)


def recomputed_logits(model, batch, prompts):
    """Logits predicting each valid response token (B × R × V, zero elsewhere), from one plain
    forward of each row's whole unpadded sequence."""
    out = torch.zeros(len(batch), batch.response_len, model.lm_head.weight.shape[0])
    with torch.no_grad():
        for b, prompt in enumerate(prompts):
            n = int(batch.response_mask_B_R[b].sum())
            ids = torch.tensor(prompt + batch.response_ids_B_R[b, :n].tolist())
            out[b, :n] = sequence_logits(model, ids[None])[0, len(prompt) - 1:-1].float()
    return out


def test_every_backend_is_a_sampler(sampler):
    assert isinstance(sampler, Sampler)


def test_fields_have_their_shapes_and_dtypes(sampler, model, prompts, zoo_tokenizer):
    batch = draw(sampler, model, prompts, zoo_tokenizer)
    B, P, R = len(prompts), max(map(len, prompts)), batch.response_len
    assert 1 <= R <= MAX_NEW_TOKENS and batch.prompt_len == P
    assert batch.input_ids_B_L.shape == batch.attention_mask_B_L.shape == (B, P + R)
    assert batch.input_ids_B_L.dtype == batch.attention_mask_B_L.dtype == torch.long
    assert batch.response_mask_B_R.shape == batch.rollout_logp_B_R.shape == (B, R)
    assert batch.response_mask_B_R.dtype == batch.rollout_logp_B_R.dtype == torch.float32
    assert batch.group_B.dtype == torch.long and batch.group_B.tolist() == GROUP


def test_prompts_are_left_padded(sampler, model, prompts, zoo_tokenizer):
    batch = draw(sampler, model, prompts, zoo_tokenizer)
    ids, mask = left_pad(prompts, zoo_tokenizer.pad_token_id)
    P = batch.prompt_len
    assert torch.equal(batch.input_ids_B_L[:, :P], ids) and torch.equal(batch.attention_mask_B_L[:, :P], mask)
    assert torch.equal(batch.attention_mask_B_L[:, P:], batch.response_mask_B_R.long())


def test_responses_stop_at_eos_and_the_mask_covers_it(sampler, model, prompts, zoo_tokenizer):
    eos, pad = zoo_tokenizer.eos_token_id, zoo_tokenizer.pad_token_id
    batch = draw(sampler, model, prompts, zoo_tokenizer)
    R = batch.response_len
    stopped = 0
    for ids, mask in zip(batch.response_ids_B_R.tolist(), batch.response_mask_B_R.tolist()):
        n = int(sum(mask))
        assert mask == [1.0] * n + [0.0] * (R - n)  # contiguous, from the first response token
        assert eos not in ids[:n - 1]  # nothing is sampled after EOS...
        assert ids[n:] == [pad] * (R - n)  # ...only padding
        assert ids[n - 1] == eos or n == MAX_NEW_TOKENS  # a row ends at EOS or at the token limit
        stopped += ids[n - 1] == eos
    assert stopped > 0
    assert (batch.rollout_logp_B_R * (1 - batch.response_mask_B_R)).abs().sum() == 0


def test_logps_are_the_models_own(sampler, backend, model, prompts, zoo_tokenizer):
    """The raw log-prob of each sampled token given its prefix (temperature 1, no top-p), even when
    sampling used another temperature and top-p."""
    batch = draw(sampler, model, prompts, zoo_tokenizer, temperature=0.7, top_p=0.9)
    logp = recomputed_logits(model, batch, prompts).log_softmax(-1)
    own = logp.gather(-1, batch.response_ids_B_R[..., None]).squeeze(-1)
    mask = batch.response_mask_B_R
    assert ((own - batch.rollout_logp_B_R).abs() * mask).max() < LOGP_TOLERANCE.get(backend, 1e-2)


def test_same_generator_seed_same_tokens(sampler, model, prompts, zoo_tokenizer):
    a, b = draw(sampler, model, prompts, zoo_tokenizer, seed=1), draw(sampler, model, prompts, zoo_tokenizer, seed=1)
    c = draw(sampler, model, prompts, zoo_tokenizer, seed=2)
    assert torch.equal(a.input_ids_B_L, b.input_ids_B_L)
    assert not torch.equal(a.input_ids_B_L, c.input_ids_B_L)
    ids = a.response_ids_B_R
    assert not all(torch.equal(ids[i], ids[i + 1]) for i in range(0, len(ids), 2))  # repeats sampled apart


@pytest.mark.parametrize("temperature, top_p", [(1e-4, 1.0), (1.0, 1e-3)], ids=["tiny_temperature", "tiny_top_p"])
def test_sampling_becomes_greedy(sampler, model, prompts, zoo_tokenizer, temperature, top_p):
    batch = draw(sampler, model, prompts, zoo_tokenizer, max_new_tokens=8, temperature=temperature, top_p=top_p)
    mask = batch.response_mask_B_R.bool()
    argmax = recomputed_logits(model, batch, prompts).argmax(-1)
    assert torch.equal(argmax[mask], batch.response_ids_B_R[mask])


def test_sync_samples_from_the_new_weights(sampler, backend, model, prompts, zoo_tokenizer):
    before = draw(sampler, model, prompts, zoo_tokenizer)
    noise = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=noise))
    sampler.sync(model)
    after = draw(sampler, model, prompts, zoo_tokenizer)
    assert not torch.equal(before.input_ids_B_L, after.input_ids_B_L)
    logp = recomputed_logits(model, after, prompts).log_softmax(-1)
    own = logp.gather(-1, after.response_ids_B_R[..., None]).squeeze(-1)
    assert ((own - after.rollout_logp_B_R).abs() * after.response_mask_B_R).max() < LOGP_TOLERANCE.get(backend, 1e-2)


def test_hf_sampler_is_hf_sample(prompts, zoo_tokenizer):
    model = load_model(STUDENT)
    kw = dict(max_new_tokens=12, eos_id=zoo_tokenizer.eos_token_id, pad_id=zoo_tokenizer.pad_token_id,
              temperature=0.8, top_p=0.95, group=GROUP)
    a = make_sampler("hf", model_spec=STUDENT, dtype="float32").sample(model, prompts, generator=torch.Generator().manual_seed(3), **kw)
    b = hf.sample(model, prompts, generator=torch.Generator().manual_seed(3), **kw)
    for field in ("input_ids_B_L", "attention_mask_B_L", "response_mask_B_R", "rollout_logp_B_R", "group_B"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field


@pytest.mark.parametrize("cause", ["vllm is not installed", "no CUDA device"])
def test_vllm_without_its_requirements_is_a_clear_error(monkeypatch, cause):
    if cause == "vllm is not installed":
        monkeypatch.setitem(sys.modules, "vllm", None)  # find_spec's answer for a missing package
    else:
        find_spec = importlib.util.find_spec
        monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "vllm" else find_spec(name, *a))
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(OpdbenchError) as err:
        make_sampler("vllm", model_spec=STUDENT, dtype="float32")
    assert str(err.value) == f"rollout=vllm needs the [gpu] extra (pip install -e '.[gpu]') and a CUDA device: {cause}"


def test_importing_the_rollout_package_does_not_import_vllm():
    code = ("import sys, opdbench.rollout, opdbench.rollout.vllm; from opdbench.rollout import BACKENDS; "
            "BACKENDS.get('hf'); print(sorted(m for m in sys.modules if m.split('.')[0] == 'vllm'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
