# scripts/pgdir.sh — sourced by testdb.sh and hacluster.sh: commands as the postgres user (initdb
# and pg_ctl refuse to run as root; cd / since the caller's directory may be closed to postgres),
# and the choice of a data directory that user can reach.
if [ "$(id -u)" -eq 0 ]; then
    as_pg() { (cd / && runuser -u postgres -- "$@"); }
else
    as_pg() { "$@"; }
fi

# pg_dir DIR FALLBACK: DIR made absolute, or FALLBACK when the postgres user cannot reach DIR's
# parent (a checkout under /root). The choice is deterministic, so every later call agrees.
pg_dir() {
    local d=$1 p
    case $d in /*) ;; *) d=$PWD/$d ;; esac
    p=$(dirname "$d")
    while [ ! -d "$p" ]; do p=$(dirname "$p"); done
    if as_pg test -x "$p" 2>/dev/null; then echo "$d"; else echo "$2"; fi
}
