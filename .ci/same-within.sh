# Sourced by firmware/run.sh and .ci/template.sh: whether a document's size table agrees with a
# build's rows. Numbers (digits grouped by spaces, "1 234 567") may differ by up to TOL, the rest
# must be equal. A build's code size moves by a few bytes with the checkout's path (cargo's hash
# of a path dependency names its symbols, which the linker orders and pads by), so exact tables
# would fail in a clone at another path.
# same_within TOL SHOWN-TEXT ROWS-TEXT
same_within() {
    awk -v tol="$1" -v a="$2" -v b="$3" '
        function shape(s) { gsub(/[0-9]+( [0-9][0-9][0-9])*/, "#", s); return s }
        function nums(s, arr,   n, t) {
            n = 0
            while (match(s, /[0-9]+( [0-9][0-9][0-9])*/)) {
                t = substr(s, RSTART, RLENGTH); gsub(/ /, "", t); arr[++n] = t
                s = substr(s, RSTART + RLENGTH)
            }
            return n
        }
        BEGIN {
            n = split(a, al, "\n"); m = split(b, bl, "\n")
            if (n != m) exit 1
            for (i = 1; i <= n; i++) {
                if (shape(al[i]) != shape(bl[i])) exit 1
                k = nums(al[i], x); nums(bl[i], y)
                for (j = 1; j <= k; j++) { d = x[j] - y[j]; if (d < 0) d = -d; if (d > tol) exit 1 }
            }
        }'
}
