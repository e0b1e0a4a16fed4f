#!/bin/bash
# usage: k1z.sh TEACHER TAG SEED : k1 on dialogue from zoo:student with another teacher (not a results cell)
cd /work/wt-main4
/usr/bin/time -f "wall %e s" python -m opdbench.cli train method=k1 task=dialogue seed=$3 threads=1 progress=false models.teachers=[$1] results_dir=/tmp/exp5/runs_$2 > /tmp/exp5/z_$2_$3.log 2>&1
echo "$2 seed $3: $(grep -E 'student, step' /tmp/exp5/z_$2_$3.log | tr -s ' ' | tr '\n' ' ') $(tail -1 /tmp/exp5/z_$2_$3.log)"
