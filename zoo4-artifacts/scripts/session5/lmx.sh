#!/bin/bash
cd /work/wt-main4
A=/work/wt-main4/zoo4-artifacts/models
for task in code dialogue; do for m in $A/teacher-xs /tmp/exp5/student; do for s in 0 1 2; do for h in opdbench lm-eval; do
  echo "$task $(basename $m) seed $s $h: $(OMP_NUM_THREADS=1 python -m opdbench.cli eval --harness $h model=$m task=$task eval.seed=$s 2>&1 | tail -1)"
done; done; done; done
