# plot.gp — draws docs/perf-concurrency.png and docs/perf-poolsize.png from the CSV files that
# bench/run.sh writes: req/s (left) and p99 latency (right) of PostgreSQL's ceiling (pgbench
# -M prepared), the Node peer and sluice. Redraw a past run with:
#   gnuplot -e "conc='bench/results/S-concurrency.csv'; pool='bench/results/S-poolsize.csv'; outdir='docs'; label='S'" bench/plot.gp
# Optional: ref=TPS and refpool=N draw the ceiling with N clients (the gateway's pool size) as a
# dotted line on the concurrency plot.
if (!exists("outdir")) outdir = "docs"
if (!exists("label")) label = ""

set datafile separator ","
set datafile missing "NaN"
set terminal pngcairo size 1200,500 enhanced font "DejaVu Sans,11" linewidth 1.5
set grid ytics lc rgb "#dddddd"
set border 3
set tics nomirror
set key below horizontal Left reverse samplen 2 width -3 maxcols 3
set bmargin 6.5
set tmargin 3

set style line 1 lc rgb "#555555" dt 2 pt 5 ps 1.2 lw 2   # ceiling
set style line 2 lc rgb "#e69f00" dt 1 pt 9 ps 1.4 lw 2   # peer
set style line 3 lc rgb "#0072b2" dt 1 pt 7 ps 1.4 lw 2.5 # sluice
set style line 4 lc rgb "#999999" dt 3 lw 1.5              # ceiling at the pool size
if (!exists("refpool")) refpool = 4

# Columns: x, ceiling rps p50 p99, peer rps p50 p99, sluice rps p50 p99.
set output outdir."/perf-concurrency.png"
set multiplot layout 1,2 title "sluice vs PostgreSQL's ceiling and a Node peer: pool 4, by HTTP concurrency (".label.")"
set logscale x 2
set xrange [0.7:370]
set xtics ("1" 1, "16" 16, "64" 64, "256" 256)
set xlabel "concurrent clients (wrk -c N; pgbench -c N)"
set ylabel "requests / s (higher is better)"
set yrange [0:*]
if (exists("ref")) {
  plot conc skip 1 using 1:2 with linespoints ls 1 title "ceiling (pgbench)", \
       ''   skip 1 using 1:5 with linespoints ls 2 title "peer (Node)", \
       ''   skip 1 using 1:8 with linespoints ls 3 title "sluice", \
       ref with lines ls 4 title sprintf("ceiling, %d clients", refpool)
} else {
  plot conc skip 1 using 1:2 with linespoints ls 1 title "ceiling (pgbench)", \
       ''   skip 1 using 1:5 with linespoints ls 2 title "peer (Node)", \
       ''   skip 1 using 1:8 with linespoints ls 3 title "sluice"
}
set logscale y 10
set yrange [*:*]
set ylabel "p99 latency, ms (lower is better)"
plot conc skip 1 using 1:4 with linespoints ls 1 title "ceiling (pgbench)", \
     ''   skip 1 using 1:7 with linespoints ls 2 title "peer (Node)", \
     ''   skip 1 using 1:10 with linespoints ls 3 title "sluice"
unset multiplot
unset logscale y

set output outdir."/perf-poolsize.png"
set multiplot layout 1,2 title "sluice vs PostgreSQL's ceiling and a Node peer: 64 HTTP connections, by pool size (".label.")"
set xrange [1.7:19]
set xtics ("2" 2, "4" 4, "8" 8, "16" 16)
set xlabel "database connections (pool\\_size; pgbench -c P: P clients, not 64)"
set ylabel "requests / s (higher is better)"
set yrange [0:*]
plot pool skip 1 using 1:2 with linespoints ls 1 title "ceiling (pgbench)", \
     ''   skip 1 using 1:5 with linespoints ls 2 title "peer (Node)", \
     ''   skip 1 using 1:8 with linespoints ls 3 title "sluice"
set logscale y 10
set yrange [*:*]
set ylabel "p99 latency, ms (lower is better)"
plot pool skip 1 using 1:4 with linespoints ls 1 title "ceiling (pgbench)", \
     ''   skip 1 using 1:7 with linespoints ls 2 title "peer (Node)", \
     ''   skip 1 using 1:10 with linespoints ls 3 title "sluice"
unset multiplot
