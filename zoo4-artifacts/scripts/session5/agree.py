import re, sys, statistics as st, math, collections
d = collections.defaultdict(list)
for f in sys.argv[1:]:
    for line in open(f, newline="").read().split("\n"):
        m = re.match(r"(\w+) (\S+) seed (\d) (\S+): .*mean@8 ([\d.]+)", line)
        if m:
            d[(m[1], m[2].replace("zoo:", ""), m[4])].append(float(m[5]))
for task in ("math", "code", "dialogue"):
    for model in ("teacher-xs", "student"):
        a, b = d.get((task, model, "opdbench")), d.get((task, model, "lm-eval"))
        if not a or not b: continue
        diff = st.fmean(b) - st.fmean(a)
        se = math.sqrt(st.variance(a) / len(a) + st.variance(b) / len(b))
        print(f"| {task} | `{model}` | {st.fmean(a):.3f} ± {st.stdev(a):.3f} | {st.fmean(b):.3f} ± {st.stdev(b):.3f} | {diff:+.3f} | {se:.3f} |  n={len(a)},{len(b)}")
