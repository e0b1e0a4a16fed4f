"""Write opdbench/zoo/checkpoints from trained folders (the weights `zoo build`'s workers made, each
run of `build._train_and_score`), scoring each as the build does (`build.eval_scores`, one thread):
what `zoo build` would write, without retraining.

usage: PYTHONPATH=<worktree> python assemble.py NAME=FOLDER ... (every SPECS name, and teacher-base)
"""
import json, shutil, sys
from dataclasses import asdict
from pathlib import Path
from safetensors.torch import load_file
from opdbench.zoo import build as B, ZOO_DIR, MANIFEST, load_tokenizer

src = dict(arg.split("=", 1) for arg in sys.argv[1:])
assert set(src) == {*B.SPECS, "teacher-base"}, sorted(src)
tok = load_tokenizer(src["teacher"])
tasks = B.load_tasks()
tmp = ZOO_DIR.with_name(ZOO_DIR.name + ".partial"); shutil.rmtree(tmp, ignore_errors=True); tmp.mkdir()
manifest = {"tokenizer_vocab": len(tok), "models": {}}
with B._one_thread():
    for name, path in src.items():
        spec = B.SPECS["teacher" if name == "teacher-base" else name]
        assert load_tokenizer(path).get_vocab() == tok.get_vocab(), name
        model = B.llama(spec, tok)
        model.load_state_dict(load_file(f"{path}/model.safetensors"), strict=False)  # tied lm_head
        model.eval()
        head = ({"base_of": "teacher", "sft_step": spec.base_step} if name == "teacher-base"
                else {"spec": asdict(spec)})
        entry = {**head, **B.eval_scores(name, model, tok, tasks, spec.context_fraction > 0 and name == "student", print)}
        manifest["models"][name] = B.save_model(tmp / name, spec, tok, model.state_dict(), entry)
(tmp / MANIFEST.name).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
shutil.rmtree(ZOO_DIR); tmp.rename(ZOO_DIR)
print(json.dumps({n: {t: round(e["eval"][t]["mean@8"], 3) for t in e["eval"]} for n, e in manifest["models"].items()}, indent=0))
