// test.sh under watch: the verifier's command when agent processes may still be alive (shared isolation, and
// after a kill or in a snapshot as a second line). It detects a reward the verifier did not write. Every
// signal here is one no honest solution can trigger, so a trial with any of them is refused (reward 0 in
// every integrity mode but off). See docs/reward-integrity.md ("Forged rewards").
//
// One bash process, builtins only (never a tool from the agent-writable PATH; the only external programs are
// /bin/rm, /bin/mkdir and /bin/mv to place the tests, as everywhere in the verifier, and /bin/bash for test.sh):
// - before anything, every process alive is the agent's (pid + start time); the exec is its own session, so
//   every process of that session is the verifier's (a process cannot join another session); a new process
//   takes the class of its parent when seen, and is "unknown" when its parent is already gone;
// - a sampler walks /proc during the tests and the settle delay: an agent process with its cwd or an open
//   file under /tests or /logs/verifier (`[[ /proc/P/fd/N -ef FILE ]]` follows the magic link), or an
//   inotify watch on /, /logs, /tests or /logs/verifier, is a forgery;
// - when test.sh returns, the reward files are opened (held) and read; after a delay they are checked again:
//   other bytes, another inode, or an mtime later than test.sh's exit is a forgery;
// - the test files placed in /tests must not change while the tests run (mtime later than the start, gone);
//   the host compares their bytes with the task's too (see verify()).
// The output is numbered lines on the exec's own stdout. A root process in the container can write into that
// pipe (through /proc/<pid>/fd/1) but cannot take lines back: a duplicate, a gap or a missing END is a forgery.

import type { Sandbox } from "../sandbox/types.js";

/** A signal of a reward the verifier did not write. */
export interface ForgerySignal {
  signal: string;
  detail: string;
}

export interface WatchedRun {
  /** test.sh's exit code (as `bash /tests/test.sh` returned it). */
  exitCode: number;
  timedOut: boolean;
  /** Forgeries seen (refuse). */
  forged: ForgerySignal[];
  /** Processes of unknown origin seen under /tests or /logs/verifier (flag only: an orphaned test daemon looks the same). */
  unknown: ForgerySignal[];
  samples: number;
  /**
   * The reward files as the runner took them at test.sh's exit, before anything could tell it ended (absent:
   * no such file then; "big": over 64 KiB; "special": not a regular file). This is the reward; the files are
   * never read again. Undefined when the runner did not get that far (a timeout, a broken monitor).
   */
  rewardFiles?: Record<string, Buffer | "big" | "special">;
}

/** How long after test.sh returns the reward files must stay as they were (a writer still active is seen). */
export const SETTLE_SEC = Number(process.env.TMAX_REWARD_SETTLE_SEC ?? "1.5");
/** The sampler's period (it also costs a walk of /proc: small enough to catch a process that lingers). */
const TICK_SEC = 0.02;
const MAX_LINES = 64;

const SCRIPT = String.raw`
d=$1 stage=$2 base=$3 limit=$4 settle=$5 tick=$6 apart=$7
set +e +u -m
shopt -s nullglob dotglob globstar
exec {nap}<> <(:)
mseq=0
say() { mseq=$((mseq + 1)); printf '\002M%d %s\n' "$mseq" "$*"; }
fields() { local line; read -r line < "/proc/$1/stat" 2>/dev/null || return 1; F=(${"$"}{line##*) }); }
fields $$ || { say FAIL no /proc; exit 3; }
self_sid=${"$"}{F[3]}
leader=0; [[ $self_sid == "$$" ]] && leader=1
declare -A seen
# class of pid $1 (A agent, V verifier, U unknown) in $c; $2 = 1 before the tests (then every other process is A)
classify() {
  local p=$1 depth=${"$"}{3:-0} st pp
  fields "$p" || { c=; return 1; }
  st=${"$"}{F[19]} pp=${"$"}{F[1]}
  if [[ -n ${"$"}{seen[$p]} && ${"$"}{seen[$p]%% *} == "$st" ]]; then c=${"$"}{seen[$p]#* }; return 0; fi
  if [[ $p == "$$" ]]; then c=V
  elif (( leader )) && [[ ${"$"}{F[3]} == "$self_sid" ]]; then c=V
  elif [[ $2 == 1 ]]; then c=A
  elif [[ $pp == "$$" ]]; then c=V
  elif [[ $pp == 0 || $pp == 1 ]] || (( depth > 32 )); then c=U
  else
    local keep=("${"$"}{F[@]}")
    classify "$pp" 0 $((depth + 1)) || c=U
    F=("${"$"}{keep[@]}")
  fi
  seen[$p]="$st $c"
}
for q in /proc/[0-9]*; do classify "${"$"}{q#/proc/}" 1; done

/bin/mkdir -p -m 700 "$d" || { say FAIL cannot create the work dir; exit 3; }
# the start reference comes before the tests exist at /tests: any later write to them is newer
: > "$d/start"
# fresh /logs/verifier and /tests (anything the agent left there goes), then the tests, moved into place only now
# a removal that keeps failing with "Directory not empty" has something writing there as it goes: a forgery
for ((i = 0; i < 5; i++)); do
  err=$(/bin/rm -rf -- /tests /logs/verifier 2>&1) && /bin/mkdir -p /logs/verifier && break
  read -r -t 0.05 -u "$nap" _
done
if (( i == 5 )); then
  [[ $err == *"not empty"* ]] && say FORGED agent-process "/tests or /logs/verifier refilled while it was cleared"
  say FAIL cannot prepare /tests and /logs/verifier
  exit 3
fi
/bin/mv -- "$stage/$base" /tests && /bin/rm -rf -- "$stage" || { say FAIL cannot place the tests; exit 3; }
placed=(/tests/**)
files=()
# a file already newer than the start (a task file with a future mtime, from a host whose clock is ahead) is left
# to the host's byte comparison
for f in "${"$"}{placed[@]}"; do [[ -f $f && ! -L $f && ! $f -nt $d/start ]] && files+=("$f"); done
say START ${"$"}{#files[@]}

# test.sh under a runner: a job of its own (its own process group, so a timeout ends all of it), held until the
# sampler runs. test.sh's parent (P) stops itself before test.sh starts and is continued only once the runner has
# taken the reward files: meanwhile test.sh's exit leaves it a zombie whose /proc entry stays (bash would reap a
# child of its own at once), so a process waiting for test.sh to vanish acts only after the reward is taken. The
# bytes taken are the reward (REWARD lines, hex): whatever is written later never counts, and is refused.
# hexof FD: the file's bytes from FD as hex in H (NUL bytes included); H=big over 64 KiB
hexof() {
  local LC_ALL=C part st i x n=0
  H=
  while :; do
    IFS= read -r -d '' -u "$1" part; st=$?
    for ((i = 0; i < ${"$"}{#part}; i++)); do printf -v x '%02x' "'${"$"}{part:i:1}"; H+=$x; done
    n=$((n + ${"$"}{#part}))
    (( n > 65536 )) && { H=big; return; }
    (( st != 0 )) && return
    H+=00; n=$((n + 1))
  done
}
exec {go}<> <(:)
exec {tp}<> <(:)
exec {gate}<> <(:)
(
  read -r -u "$go" _
  exec {go}<&-
  tseq=0
  tsay() { tseq=$((tseq + 1)); printf '\002T%d %s\n' "$tseq" "$*"; }
  (
    (
      read -r -u "$gate" _
      exec {gate}<&- {tp}<&- {nap}<&-
      # train keeps the streams apart (open-instruct's test report shows them so); eval merges them as Harbor does
      if [[ $apart == 1 ]]; then exec /bin/bash /tests/test.sh > /logs/verifier/test-stdout.txt 2> /logs/verifier/test-stderr.txt; fi
      exec /bin/bash /tests/test.sh > /logs/verifier/test-stdout.txt 2>&1
    ) &
    printf '%s\n' "$!" >&"$tp"
    kill -STOP "$BASHPID"
    wait "$!"
  ) &
  p=$!
  read -r -u "$tp" t
  exec {tp}<&-
  while fields "$p" && [[ ${"$"}{F[0]} != T ]]; do read -r -t 0.002 -u "$nap" _; done
  printf 'go\n' >&"$gate"
  exec {gate}<&-
  while fields "$t" && [[ ${"$"}{F[0]} != Z ]]; do read -r -t 0.01 -u "$nap" _; done
  : > "$d/exit"
  declare -A fd0 hex0 seen0
  for r in reward.txt reward.json; do
    f=/logs/verifier/$r
    [[ -e $f || -L $f ]] || continue
    seen0[$r]=1
    [[ $f -nt $d/exit ]] && tsay FORGED reward-after-exit "$r written after test.sh returned"
    if [[ -f $f ]] && exec {h}< "$f"; then
      fd0[$r]=$h
      hexof "$h"
      hex0[$r]=$H
      tsay REWARD "$r" "$H"
    else
      tsay REWARD "$r" special
    fi
  done
  kill -CONT "$p"
  wait "$p"; rc=$?
  tsay EXIT $rc
  # nothing writes to this pipe: a read that returns before the delay was woken by someone else
  read -r -t "$settle" -u "$nap" _ && tsay FORGED monitor "the settle delay was cut short"
  : > "$d/now"
  [[ $d/exit -nt $d/now || $d/start -nt $d/exit ]] && tsay FORGED clock "the verifier's time references were changed"
  for r in reward.txt reward.json; do
    f=/logs/verifier/$r
    if [[ -z ${"$"}{fd0[$r]} ]]; then
      [[ -z ${"$"}{seen0[$r]} ]] && [[ -e $f || -L $f ]] && tsay FORGED reward-after-exit "$r appeared after test.sh returned"
      continue
    fi
    if ! [[ -e $f ]]; then tsay FORGED reward-rewritten "$r removed after test.sh returned"; continue; fi
    [[ /proc/$BASHPID/fd/${"$"}{fd0[$r]} -ef $f ]] || tsay FORGED reward-rewritten "$r replaced (another inode) after test.sh returned"
    [[ $f -nt $d/exit ]] && tsay FORGED reward-rewritten "$r modified after test.sh returned"
    H=; { exec {g}< "$f"; } 2>/dev/null && { hexof "$g"; exec {g}<&-; }
    [[ $H == "${"$"}{hex0[$r]}" ]] || tsay FORGED reward-rewritten "$r bytes changed after test.sh returned"
  done
  tsay END
  exit "$rc"
) &
tpid=$!
exec {tp}<&- {gate}<&-

# the sampler: a job of this session; it stops when $d/stop appears (a stop from elsewhere shows in the order of lines)
(
  exec {go}<&-
  s=0 sseq=0 hits=0 killed=
  declare -A told
  note() { local k="$1 $2"; [[ -n ${"$"}{told[$k]} ]] && return; told[$k]=1; (( hits++ < 40 )) || return; sseq=$((sseq + 1)); printf '\002S%d %s\n' "$sseq" "$*"; }
  ino() { local fd l v; { exec {fd}< "$1"; } 2>/dev/null || return 1; while read -r l; do [[ $l == ino:* ]] && { v=${"$"}{l#ino:}; printf -v I '%x' "${"$"}{v//[[:space:]]/}"; break; }; done < "/proc/$BASHPID/fdinfo/$fd"; exec {fd}<&-; }
  while :; do
    s=$((s + 1))
    targets=(/tests /tests/** /logs/verifier /logs/verifier/**)
    declare -A watch=()
    for t in / /logs /tests /logs/verifier /logs/verifier/*; do I=; ino "$t" && [[ -n $I ]] && watch[$I]=$t; done
    for q in /proc/[0-9]*; do
      p=${"$"}{q#/proc/}
      [[ $p == "$BASHPID" ]] && continue
      classify "$p" 0 || continue
      [[ $c == V || -z $c ]] && continue
      who=agent; [[ $c == U ]] && who=unknown
      for t in "${"$"}{targets[@]}"; do [[ -d $t && $q/cwd -ef $t ]] && note "$who" "cwd pid=$p ${"$"}{t//[^[:graph:]]/?}"; done
      for fd in "$q"/fd/*; do
        [[ -p $fd || -S $fd || -c $fd || -b $fd ]] && continue
        hit=
        if [[ -f $fd || -d $fd ]]; then
          for t in "${"$"}{targets[@]}"; do [[ $fd -ef $t ]] && { hit=1; note "$who" "open pid=$p ${"$"}{t//[^[:graph:]]/?}"; break; }; done
        fi
        # an inotify instance (an anonymous inode: a regular file to stat on some kernels): its watches are in fdinfo
        [[ -z $hit && ! -d $fd ]] && while read -r k w i rest; do
          [[ $k == inotify && $i == ino:* && -n ${"$"}{watch[${"$"}{i#ino:}]} ]] && note "$who" "inotify pid=$p ${"$"}{watch[${"$"}{i#ino:}]}"
        done < "${"$"}{q}/fdinfo/${"$"}{fd##*/}" 2>/dev/null
      done
    done
    if (( limit > 0 && SECONDS >= limit )) && [[ -z $killed ]]; then killed=1; sseq=$((sseq + 1)); printf '\002S%d TIMEOUT\n' "$sseq"; kill -TERM -- "-$tpid" 2>/dev/null; fi
    if [[ -n $killed ]] && (( SECONDS >= limit + 10 )); then kill -KILL -- "-$tpid" 2>/dev/null; fi
    [[ -e $d/stop ]] && break
    # nothing writes to this pipe: a sleep with builtins only
    read -r -t "$tick" -u "$nap" _
  done
  sseq=$((sseq + 1)); printf '\002S%d END %d\n' "$sseq" "$s"
) &
spid=$!
printf 'go\n' >&$go
exec {go}<&-
wait "$tpid"
for f in "${"$"}{files[@]}"; do
  if ! [[ -f $f ]]; then say FORGED tests-changed "${"$"}{f//[^[:graph:]]/?} removed while the tests ran"
  elif [[ $f -nt $d/start ]]; then say FORGED tests-changed "${"$"}{f//[^[:graph:]]/?} modified while the tests ran"; fi
done
say STOP
: > "$d/stop"
# bounded: a sampler that does not end (stopped by someone) is reported by its missing END; generous, since a
# loaded host (or a busy agent process) slows its walk of /proc
for ((i = 0; i < 3000; i++)); do fields "$spid" || break; [[ ${"$"}{F[0]} == Z ]] && break; read -r -t 0.02 -u "$nap" _; done
if fields "$spid" && [[ ${"$"}{F[0]} != Z ]]; then
  w=; read -r w < "/proc/$spid/wchan" 2>/dev/null
  say FORGED monitor "the sampler did not stop (state ${"$"}{F[0]} ${"$"}{w//[^[:graph:]]/?})"
  kill -KILL "$spid" 2>/dev/null
fi
wait "$spid"
/bin/rm -rf -- "$d"
say END
exit 0
`;

export interface WatchInput {
  sandbox: Sandbox;
  /** Where the tests were uploaded (a random dir at /) and the uploaded dir's name in it. */
  staging: string;
  base: string;
  env: Record<string, string>;
  timeoutSec: number;
  signal?: AbortSignal;
  /** test.sh's stdout and stderr to test-stdout.txt and test-stderr.txt apart (train), else merged (eval). */
  streamsApart?: boolean;
}

/**
 * Places the tests (staging → /tests) and runs test.sh under watch, in one exec of its own (never through the
 * agent container's resident executor, whose pipes the agent can reach).
 */
export async function runWatched(input: WatchInput, nonce: string): Promise<WatchedRun> {
  const { sandbox, timeoutSec } = input;
  const work = `/.tmax-watch-${nonce}`;
  const limit = Math.max(1, Math.ceil(timeoutSec));
  const run = await sandbox.exec(
    ["/bin/bash", "--noprofile", "--norc", "-c", SCRIPT, "tmax-verifier", work, input.staging, input.base, String(limit), String(SETTLE_SEC), String(TICK_SEC), input.streamsApart ? "1" : "0"],
    // the exec's own limit is a backstop: the sampler ends test.sh at `limit` (TERM, then KILL 10 s later)
    { cwd: sandbox.workdir, env: input.env, timeoutSec: limit + SETTLE_SEC + 60, signal: input.signal, direct: true },
  );
  return parseWatch(run.stdout, run.exitCode, run.timedOut);
}

/** Reads the numbered lines; anything out of order, repeated or missing is a forgery of the monitor's output. */
export function parseWatch(stdout: string, exitCode: number, execTimedOut: boolean): WatchedRun {
  const forged: ForgerySignal[] = [];
  const unknown: ForgerySignal[] = [];
  const next = { M: 1, S: 1, T: 1 };
  let rc: number | undefined;
  let samples = 0;
  let stopAt = -1;
  let samplerEndAt = -1;
  let end = false;
  let runnerEnd = false;
  let timedOut = execTimedOut;
  let failure: string | undefined;
  let rewardFiles: Record<string, Buffer | "big" | "special"> | undefined;
  let index = 0;
  const bad = (why: string) => forged.length < MAX_LINES && forged.push({ signal: "monitor", detail: why });
  for (const raw of stdout.split("\n")) {
    if (!raw.startsWith("\x02")) continue;
    index++;
    const m = /^\x02([MST])(\d+) (\S+)(?: (.*))?$/.exec(raw);
    if (!m) {
      bad("a line not of the verifier's monitor");
      continue;
    }
    const [, who, seqText, kind, rest = ""] = m;
    const seq = Number(seqText);
    const stream = who as "M" | "S" | "T";
    if (seq !== next[stream]) {
      bad(`monitor line ${who}${seq} out of sequence (expected ${who}${next[stream]})`);
      next[stream] = Math.max(next[stream], seq + 1);
      continue;
    }
    next[stream] = seq + 1;
    if (kind === "FORGED" && who !== "S") {
      const [signal, ...detail] = rest.split(" ");
      forged.push({ signal, detail: detail.join(" ") });
    } else if (who === "T") {
      if (kind === "REWARD") {
        const [name = "", body = ""] = rest.split(" ");
        rewardFiles ??= {};
        if ((name === "reward.txt" || name === "reward.json") && !(name in rewardFiles)) {
          rewardFiles[name] = body === "big" || body === "special" ? body : /^(?:[0-9a-f]{2})*$/.test(body) ? Buffer.from(body, "hex") : "special";
        } else bad(`a reward line not of the verifier's runner: ${JSON.stringify(rest.slice(0, 40))}`);
      } else if (kind === "EXIT") {
        rc = Number(rest);
        rewardFiles ??= {}; // taken (none there) before the runner reaped test.sh
      }
      else if (kind === "END") runnerEnd = true;
    } else if (who === "M") {
      if (kind === "STOP") stopAt = index;
      else if (kind === "END") end = true;
      else if (kind === "FAIL") failure = rest;
    } else {
      if (kind === "agent") forged.length < MAX_LINES && forged.push({ signal: "agent-process", detail: rest });
      else if (kind === "unknown") unknown.length < MAX_LINES && unknown.push({ signal: "unknown-process", detail: rest });
      else if (kind === "TIMEOUT") timedOut = true;
      else if (kind === "END") {
        samplerEndAt = index;
        samples = Number(rest) || 0;
      }
    }
  }
  if (failure) throw Object.assign(new Error(`the verifier could not start: ${failure}`), { forged });
  if (!timedOut) {
    if (!end || !runnerEnd || rc === undefined) bad(`the verifier's monitor did not finish (exit ${exitCode})`);
    if (samplerEndAt < 0) bad("the sampler did not finish");
    else if (stopAt < 0 || samplerEndAt < stopAt) bad("the sampler stopped before it was told to");
  }
  return { exitCode: rc ?? exitCode, timedOut, forged, unknown, samples, ...(rewardFiles ? { rewardFiles } : {}) };
}
