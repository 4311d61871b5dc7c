#!/usr/bin/env bash
# Drive the vql shell in a real terminal (tmux, 120x40) and save what the screen shows, as
# plain text, in docs/terminal/: completion, history, dot-commands, the progress bar during a
# query and after it, Ctrl-C during a query, -c piped, and start-up times.
# Usage (from the repository root, with .venv built): bash docs/terminal/capture.sh
set -euo pipefail
OUT=docs/terminal
VIDEO=${VQL_SHARED:-../shared}/data/vtest.avi
S=vql-capture-$$
DB=$(mktemp -d)/demo.duckdb
export HOME=${CAPTURE_HOME:-$(mktemp -d)}  # a fresh ~/.vql_history
VQL=$PWD/.venv/bin/vql

cap() { tmux capture-pane -p -t "$S" | sed -e 's/[[:space:]]*$//' > "$OUT/$1.txt"; }
keys() { tmux send-keys -t "$S" "$@"; }
line() {  # type a line and Enter; tmux reads an argument's final ';' as its own separator: escape it
  local text=$1
  [[ $text == *";" ]] && text="${text%;}\\;"
  tmux send-keys -t "$S" -l "$text"; tmux send-keys -t "$S" Enter
}
clear_screen() { keys C-l; sleep 0.3; }
wait_for() {  # until the screen's last non-empty line is a fresh prompt and $1 is on screen
  for _ in $(seq 1 600); do
    screen=$(tmux capture-pane -p -t "$S")
    last=$(printf '%s\n' "$screen" | sed -e '/^[[:space:]]*$/d' | tail -1)
    if [[ "$last" == "vql>" || "$last" == "vql> " ]] && grep -qF -- "$1" <<<"$screen"; then return 0; fi
    sleep 0.2
  done
  echo "timed out waiting for $1" >&2; return 1
}

tmux new-session -d -s "$S" -x 120 -y 40 "$VQL $DB"
trap 'tmux kill-session -t "$S" 2>/dev/null || true' EXIT
wait_for "Enter .help"
line "CREATE VIDEO cam FROM '$VIDEO';"
wait_for "video cam"

# (a) tab completion: a video after FROM, class names inside contains('
clear_screen
keys -l "SELECT * FROM ca"; sleep 0.5; keys Tab; sleep 0.5
cap a1_complete_video
keys C-c; clear_screen
keys -l "SELECT frame FROM cam WHERE contains('pe"; sleep 0.5; keys Tab; sleep 0.5
cap a2_complete_class
keys C-c; clear_screen
keys -l "SELECT frame FROM cam WHERE contains('b"; sleep 0.5; keys Tab; sleep 0.5
cap a3_complete_class_menu
keys C-c; clear_screen

# (b) a multi-line statement recalled from history as one entry
line "SELECT count(*) AS n"; sleep 0.2
line "FROM cam"; sleep 0.2
line "WHERE frame < 5;"
wait_for "1 row"
keys Up; sleep 0.5
cap b_history_multiline
keys C-c; clear_screen

# (c) .tables, .schema, .bail, .echo
line ".tables"; sleep 0.5
line ".schema"; sleep 0.5
line ".echo on"; sleep 0.3
line ".bail off"; sleep 0.3
line "SELECT nope FROM cam; SELECT 42 AS answer;"; wait_for "answer"
line ".bail on"; sleep 0.3
line "SELECT nope FROM cam; SELECT 43 AS answer;"; sleep 1
line ".echo off"; sleep 0.3
cap c_dot_commands
clear_screen

# (d) the progress bar during a query, and the screen after it
line ".timer on"; sleep 0.3
clear_screen
line "SELECT count(*) FROM cam WHERE contains('person') AND frame < 60 WITH (exact);"
mkdir -p "$OUT/.during"
for i in $(seq -w 1 200); do
  tmux capture-pane -p -t "$S" | sed -e 's/[[:space:]]*$//' > "$OUT/.during/$i.txt"
  grep -q "Run Time" "$OUT/.during/$i.txt" && break
  sleep 0.25
done
during=$(grep -l "frames/s" "$OUT"/.during/*.txt | sort | awk '{a[NR]=$0} END {print a[int((NR+1)/2)]}')
cp "$during" "$OUT/d1_progress_during.txt"
wait_for "Run Time"
cap d2_progress_after
rm -r "$OUT/.during"

# Ctrl-C during a query: the bar goes, the shell stays
clear_screen
line "SELECT count(*) FROM cam WHERE contains('car') AND frame BETWEEN 100 AND 400 WITH (exact);"
for _ in $(seq 1 150); do tmux capture-pane -p -t "$S" | grep -qE "[0-9] frames/s" && break; sleep 0.2; done
cap d3_before_ctrl_c
keys C-c; wait_for "Interrupted"
cap d4_after_ctrl_c
line ".quit"; sleep 1

# -c with stdout piped: the bar shows on the terminal (stderr) and clears; stdout holds the result only
tmux kill-session -t "$S" 2>/dev/null || true
tmux new-session -d -s "$S" -x 120 -y 40
keys -l "export V=$VQL D=$DB PS1='$ '"; keys Enter; sleep 0.5; keys C-l; sleep 0.5
keys -l "\$V \$D --format csv -c \"SELECT count(*) AS n FROM cam WHERE contains('person') AND frame BETWEEN 60 AND 99 WITH (exact)\" | cat -A; echo exit=\$?"
keys Enter
for _ in $(seq 1 300); do tmux capture-pane -p -t "$S" | grep -qE "[0-9] frames/s" && break; sleep 0.2; done
cap e1_piped_during
for _ in $(seq 1 300); do tmux capture-pane -p -t "$S" | grep -qE "^exit=[0-9]" && break; sleep 0.2; done
cap e2_piped_after

# start-up times (/usr/bin/time -f %e, wall seconds): median of 3
{
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
  for what in "--version" "$DB -c SHOW_VIDEOS"; do
    times=()
    for _ in 1 2 3; do
      if [[ $what == --version ]]; then t=$( { /usr/bin/time -f %e "$VQL" --version >/dev/null; } 2>&1 ) || true
      else t=$( { /usr/bin/time -f %e "$VQL" "$DB" -c "SHOW VIDEOS" >/dev/null; } 2>&1 ) || true; fi
      times+=("$t")
    done
    median=$(printf '%s\n' "${times[@]}" | sort -n | sed -n 2p)
    [[ $what == --version ]] && shown="vql --version" || shown="vql DB -c 'SHOW VIDEOS'"
    echo "$shown: ${times[*]} s (median of 3: $median s)"
  done
} > "$OUT/f_startup_times.txt"
cat "$OUT/f_startup_times.txt"
