# The resident executor of the docker backend (src/sandbox/docker/executor.ts): one bash per sandbox that runs
# each command as an exec would. @KILL_AFTER_SEC@ is filled in by executor.ts.
IFS= read -r key || exit 3
[[ $key =~ ^[0-9a-f]{32}$ ]] || exit 3
ctl() { printf '\001%s %s\n' "$key" "$*" >&2; }
if (( BASH_VERSINFO[0] * 100 + BASH_VERSINFO[1] < 501 )); then ctl "F bash $BASH_VERSION is older than 5.1"; exit 4; fi
# what an exec gets, taken before this script changes anything: its environment (bash adds PWD, SHLVL and _
# to its own) and its umask; every command gets exactly these again
base=()
while IFS= read -r -d '' kv; do base+=("$kv"); done < /proc/$$/environ
(( ${#base[@]} > 0 )) || { ctl "F cannot read the exec environment from /proc"; exit 4; }
umask0=$(umask)
declare -A T
for c in timeout stdbuf head wc env stat cat rm mkdir; do
  T[$c]=$(PATH=/usr/bin:/bin:/usr/sbin:/sbin; command -v -- "$c" 2>/dev/null)
  [[ ${T[$c]} == /* ]] || { ctl "F no $c in the system dirs of the image"; exit 4; }
done
# an exec's process leads its own session (and its group); without setsid(1) a command stays in the helper's
T[setsid]=$(PATH=/usr/bin:/bin:/usr/sbin:/sbin; command -v -- setsid 2>/dev/null)
[[ ${T[setsid]} == /* ]] && "${T[setsid]}" -w true 2>/dev/null || T[setsid]=
d=/tmp/.tmax-executor-$1
[[ -d /dev/shm && -w /dev/shm ]] && d=/dev/shm/.tmax-executor-$1
umask 077
"${T[mkdir]}" -p "$d" 2>/dev/null || { ctl "F cannot create $d"; exit 3; }
exec {nap}<> <(:)
cd /
# Does a process still hold a write end of the pipe that reader $1 reads (its fd 0)? Every /proc/<pid>/fd link
# that stats to the same pipe and is open for writing, except the two readers' own (a starting stderr reader
# holds the stdout pipe until its first line closes it).
writer() {
  local p=/proc/$1/fd/0 f k v
  [[ -e $p ]] || return 1
  for f in /proc/[0-9]*/fd/*; do
    [[ $f == /proc/$po/* || $f == /proc/$pe/* || ! $f -ef $p ]] && continue
    while read -r k v; do
      [[ $k == flags: ]] && { (( 8#$v & 3 )) && return 0; break; }
    done < "${f%/fd/*}/fdinfo/${f##*/}"
  done 2>/dev/null
  return 1
}
run() {
  local id=$1 t=$2 cap=$3 cwd=$4 n=$5; shift 5
  local -a envs=("${@:1:n}"); shift "$n"
  local o="$d/$id.o" e="$d/$id.e" fo fe po pe pid rc w
  [[ -d $d ]] || "${T[mkdir]}" -p "$d"
  # readers: keep the first $cap bytes (unbuffered: written as they arrive), then count and drop the rest
  exec {fo}> >("${T[stdbuf]}" -o0 "${T[head]}" -c "$cap" > "$o"; exec "${T[wc]}" -c > "$o.n"); po=$!
  exec {fe}> >(exec {fo}>&-; "${T[stdbuf]}" -o0 "${T[head]}" -c "$cap" > "$e"; exec "${T[wc]}" -c > "$e.n"); pe=$!
  (
    exec {fo}>&- {fe}>&-
    cd -- "$cwd" 2>/dev/null || { printf 'chdir to cwd (%s) failed: no such file or directory\n' "$cwd" >&2; exit 127; }
    umask "$umask0"
    # the exec's environment plus this command's (env -i: nothing of this script's own), in a session of its
    # own, under timeout(1) only when there is a limit (as an exec)
    local -a pre=("${T[env]}" -i -- "${base[@]}" "${envs[@]}")
    [[ -n ${T[setsid]} ]] && pre+=("${T[setsid]}" -w)
    if [[ $t != 0 || -z ${T[setsid]} ]]; then pre+=("${T[timeout]}" -k @KILL_AFTER_SEC@ "$t"); fi
    exec "${pre[@]}" "$@"
  ) </dev/null >&$fo 2>&$fe {nap}<&- &
  pid=$!
  printf '%s' "$pid" > "$d/$id.pid"
  exec {fo}>&- {fe}>&-
  wait "$pid"; rc=$?
  # the readers end at EOF. A background process still holding the pipes must not hold the answer: after a
  # grace the readers are stopped (its output so far is in the files). Without such a writer the readers are
  # waited for (up to 30 s): on a loaded machine they may start late, and what is still in a pipe is output.
  ( read -t 0.2 -u "$nap"
    end=$((SECONDS + 30))
    while (( SECONDS < end )); do writer "$po" || writer "$pe" && break; read -t 0.1 -u "$nap"; done
    kill "$po" "$pe" 2>/dev/null ) & w=$!
  wait "$po" "$pe" 2>/dev/null
  kill "$w" 2>/dev/null
  ctl "D $id $rc"
}
out() {
  local id=$1 o="$d/$1.o" e="$d/$1.e" on=0 en=0 os es
  read -r on < "$o.n" 2>/dev/null; read -r en < "$e.n" 2>/dev/null
  [[ -e $o ]] || : > "$o"; [[ -e $e ]] || : > "$e"
  os=0 es=0
  if [[ -s $o || -s $e ]]; then { read -r os; read -r es; } < <("${T[stat]}" -c %s -- "$o" "$e"); fi
  # header and output in one file, written out by one cat: an answer up to a pipe buffer (4 KiB) is one
  # write, which noise another process writes into this stream cannot split
  { printf '\001%s O %s %s %s %s %s\n' "$key" "$id" "$os" "$es" "$((os + ${on:-0}))" "$((es + ${en:-0}))"
    if (( os + es > 0 )); then "${T[cat]}" -- "$o" "$e"; fi; } > "$d/$id.a"
  "${T[cat]}" -- "$d/$id.a"
  "${T[rm]}" -f -- "$o" "$e" "$o.n" "$e.n" "$d/$id.pid" "$d/$id.a"
}
ctl R
while IFS= read -r line; do
  case $line in
    X\ *) eval "set -- ${line#X }"; run "$@" & ;;
    O\ *) out "${line#O }" ;;
    # the pid file has no newline, so read returns 1 at its end: the value is checked, not read's status
    K\ *) id=${line#K }; p=; read -r p < "$d/$id.pid" 2>/dev/null; [[ $p =~ ^[0-9]+$ ]] && { kill -KILL -- "-$p" 2>/dev/null; kill -KILL "$p" 2>/dev/null; } ;;
  esac
done
