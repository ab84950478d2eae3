# launch/restarts.bash: the restart loop of launch/local, launch/hostfile and cluster/slurm/thaw.sbatch
# (sourced, not run).
#
# run_with_restarts NAME MAX DELAY START ARGUMENTS...
#   Runs `START ARGUMENTS...` (a function or command that starts the workers and returns their exit
#   status). After a failure it runs it again, with `--resume auto` added unless ARGUMENTS already
#   have a --resume, up to MAX times, waiting DELAY seconds before the first relaunch and twice as
#   long before each further one. Exit 78 (a configuration error, EX_CONFIG) and 64 (a malformed
#   option) are not retried: running again cannot help. Returns the last exit status.
run_with_restarts() {
    local name="$1" max="$2" delay="$3"
    shift 3
    local command=("$@") restarts=0 status wait
    [[ "$max" =~ ^[0-9]+$ ]] || { echo "$name: --max-restarts: expected a count, got $max" >&2; return 64; }
    [[ "$delay" =~ ^[0-9]+([.][0-9]+)?$ ]] || { echo "$name: --restart-delay: expected seconds, got $delay" >&2; return 64; }
    while true; do
        status=0
        "${command[@]}" || status=$?
        [ "$status" -eq 0 ] && return 0
        if [ "$status" -eq 78 ] || [ "$status" -eq 64 ]; then
            echo "$name: configuration error (exit $status); not restarting" >&2
            return "$status"
        fi
        if [ "$restarts" -ge "$max" ]; then
            [ "$max" -gt 0 ] && echo "$name: the run failed (exit $status) after $restarts restart(s); giving up" >&2
            return "$status"
        fi
        restarts=$((restarts + 1))
        wait=$(awk -v d="$delay" -v n="$restarts" 'BEGIN { printf "%g", d * 2 ^ (n - 1) }')
        echo "$name: the run failed (exit $status); restart $restarts of $max in $wait s with --resume auto" >&2
        sleep "$wait"
        case " ${command[*]} " in *" --resume "*) ;; *) command+=(--resume auto) ;; esac
    done
}
