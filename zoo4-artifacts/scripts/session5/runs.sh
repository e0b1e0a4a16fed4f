#!/bin/bash
# usage: runs.sh METHOD TASK SEED  (one results cell, like the README's command)
cd /work/wt-main4
/usr/bin/time -f "$1 $2 seed $3: wall %e s" python -m opdbench.cli train method=$1 task=$2 seed=$3 threads=1 progress=false > /tmp/exp5/run_$1_$2_$3.log 2>&1
echo "$(tail -1 /tmp/exp5/run_$1_$2_$3.log) | $(grep -E 'student, step' /tmp/exp5/run_$1_$2_$3.log | tr -s ' ' | tr '\n' ' ')"
