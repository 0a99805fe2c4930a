#!/bin/sh
# Every include in src/ must point to the same layer or one below it:
# core < pg < lua < http < api < cli.
cd "$(dirname "$0")/.." || exit 2
rank() { case $1 in core) echo 0;; pg) echo 1;; lua) echo 2;; http) echo 3;; api) echo 4;; cli) echo 5;; *) echo 9;; esac; }
bad=0
for f in src/*/*.[ch]; do
    from=$(basename "$(dirname "$f")")
    grep -o '^#include "[^"]*"' "$f" | sed 's/#include "\(.*\)"/\1/' | while read -r inc; do
        to=$(ls src/*/"$inc" 2>/dev/null | head -n1)
        [ -n "$to" ] || continue
        to=$(basename "$(dirname "$to")")
        if [ "$(rank "$to")" -gt "$(rank "$from")" ]; then
            echo "$f includes $inc ($to is above $from)"
            echo x >&3
        fi
    done
done 3>/tmp/layers.bad.$$
[ -s /tmp/layers.bad.$$ ] && bad=1
rm -f /tmp/layers.bad.$$
exit $bad
