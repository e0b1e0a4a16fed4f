import torch

from opdbench.chat import encode_prompt
from opdbench.rollout.hf import sample
from opdbench.teachers import score, score_all
from tests.conftest import make_llama


def test_teacher_scores_match_a_direct_computation(tiny_model, tokenizer, math_task):
    prompts = [encode_prompt(tokenizer, ex.prompt) for ex in math_task.examples("eval")[:5]]
    batch = sample(tiny_model, prompts, max_new_tokens=8, eos_id=tokenizer.eos_token_id,
                   pad_id=tokenizer.pad_token_id, generator=torch.Generator().manual_seed(0))
    teacher = make_llama(tokenizer, seed=1)
    scores = score(teacher, batch, top_k=4, micro_batch=2)
    for b in range(len(batch)):
        n = int(batch.response_mask_B_R[b].sum())
        ids = batch.input_ids_B_L[b][batch.attention_mask_B_L[b].bool()]  # the row without padding
        with torch.no_grad():
            logp = teacher(ids[None]).logits[0].log_softmax(-1)
        P = len(ids) - n
        for t in range(n):
            dist = logp[P - 1 + t]
            tok = ids[P + t]
            torch.testing.assert_close(scores.logp_B_R[b, t], dist[tok], atol=1e-5, rtol=0)
            torch.testing.assert_close(scores.topk_logp_B_R_K[b, t], dist.topk(4).values, atol=1e-5, rtol=0)
            assert scores.topk_idx_B_R_K[b, t].tolist() == dist.topk(4).indices.tolist()
            torch.testing.assert_close(scores.entropy_B_R[b, t], -(dist.exp() * dist).sum(), atol=1e-5, rtol=0)
    assert scores.topk_idx_B_R_K.shape == (*batch.response_mask_B_R.shape, 4)
    both = score_all([teacher, tiny_model], batch, top_k=4, micro_batch=5)
    torch.testing.assert_close(both[0].logp_B_R, scores.logp_B_R)  # micro-batching changes nothing
    assert not torch.allclose(both[1].logp_B_R, scores.logp_B_R)
