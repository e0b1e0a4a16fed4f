"""Assemble the zoo from per-model runs of build._train_and_score (the function `zoo build` runs
in each worker): /tmp/exp4/final/<name> (weights) + <name>.json (manifest entry)."""
import json, shutil, sys
from dataclasses import asdict
from safetensors.torch import load_file
from opdbench.zoo import build as B, ZOO_DIR, MANIFEST, load_tokenizer
src = {name: f"/tmp/exp4/final/{name}" for name in ["teacher-xs", "teacher-s", "teacher-m", "teacher", "teacher-base"]}
src["student"] = sys.argv[1]
tok = load_tokenizer(src["teacher"])
tmp = ZOO_DIR.with_name(ZOO_DIR.name + ".partial"); shutil.rmtree(tmp, ignore_errors=True); tmp.mkdir()
manifest = {"tokenizer_vocab": len(tok), "models": {}}
for name, path in src.items():
    entry = json.load(open(path + ".json"))
    spec = B.SPECS[entry.get("base_of", name)]
    if "spec" in entry:
        assert entry["spec"] == asdict(spec), (name, entry["spec"], asdict(spec))
    assert load_tokenizer(path).get_vocab() == tok.get_vocab()
    state = load_file(f"{path}/model.safetensors")
    m = B.llama(spec, tok); missing = m.load_state_dict(state, strict=False)
    state = {k: v for k, v in m.state_dict().items()}
    manifest["models"][name] = B.save_model(tmp / name, spec, tok, state, entry)
(tmp / MANIFEST.name).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
shutil.rmtree(ZOO_DIR); tmp.rename(ZOO_DIR)
print(json.dumps({n: {t: round(e["eval"][t]["mean@8"], 3) for t in e["eval"]} for n, e in manifest["models"].items()}, indent=0))
