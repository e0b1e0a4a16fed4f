#!/bin/bash
# usage: k1.sh STUDENT_DIR TEACHER_DIR TAG SEED task...
cd /work/wt-main4
S=$1; T=$2; TAG=$3; SEED=$4; shift 4
for task in "$@"; do
  OMP_NUM_THREADS=1 /usr/bin/time -f "$task wall %e s" python -m opdbench.cli train method=k1 task=$task seed=$SEED progress=false \
    models.student=$S models.teachers=[$T] results_dir=/tmp/exp5/runs_$TAG > /tmp/exp5/k1_${TAG}_${task}_$SEED.log 2>&1
  echo "$TAG $task seed $SEED: $(grep -E 'student, step' /tmp/exp5/k1_${TAG}_${task}_$SEED.log | tr '\n' ' ') $(tail -n 1 /tmp/exp5/k1_${TAG}_${task}_$SEED.log)"
done
