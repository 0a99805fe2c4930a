# bench/cputicks.sh — sourced by bench/lib.sh and bench/harness.sh: CPU clock ticks of a process.
# CPU clock ticks used by a process and its live children, plus the children it already reaped
# (postgres backends that exited): fields 14-17 of /proc/PID/stat.
CLK_TCK=$(getconf CLK_TCK)
ticks() { # PID
    local pid sum=0 st f
    for pid in "$1" $(pgrep -P "$1" 2>/dev/null || true); do
        st=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
        read -ra f <<<"${st##*) }" # f[0] is field 3: the command name may hold spaces
        sum=$((sum + f[11] + f[12]))
        [[ $pid == "$1" ]] && sum=$((sum + f[13] + f[14]))
    done
    echo "$sum"
}
