# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_dbctl_global_optspecs
    string join \n repo= o/output= state-dir= identity= accept-new-host-keys q/quiet v/verbose events timeout= h/help V/version
end

function __fish_dbctl_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_dbctl_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_dbctl_using_subcommand
    set -l cmd (__fish_dbctl_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c dbctl -n "__fish_dbctl_needs_command" -l repo -d 'The GitOps repo (default: the current directory)' -r -F
complete -c dbctl -n "__fish_dbctl_needs_command" -s o -l output -d 'Output format' -r -f -a "human\t'Text for people'
json\t'One JSON document on stdout'
markdown\t'Markdown on stdout, for a CI job\'s summary or a merge request\'s comment (progress on stderr as for people)'"
complete -c dbctl -n "__fish_dbctl_needs_command" -l state-dir -d 'Where the `local` platform keeps database instances (default: /var/lib/dbctl for root, ~/.local/share/dbctl otherwise)' -r -F
complete -c dbctl -n "__fish_dbctl_needs_command" -l identity -d 'The age identity file that decrypts connection files (default: ~/.config/dbctl/identity.txt)' -r -F
complete -c dbctl -n "__fish_dbctl_needs_command" -l timeout -d 'Give up waiting on the platform after this many seconds: a Heat stack operation, resource groups starting, a server accepting connections after a (re)start (default: each wait\'s own; Heat 1800 s, groups 180 s, servers 30–120 s)' -r
complete -c dbctl -n "__fish_dbctl_needs_command" -l accept-new-host-keys -d 'Trust SSH host keys not yet in `known_hosts` (a changed key is still refused)'
complete -c dbctl -n "__fish_dbctl_needs_command" -s q -l quiet -d 'No progress lines on stderr'
complete -c dbctl -n "__fish_dbctl_needs_command" -s v -l verbose -d 'Show the output of the commands each step runs, as it arrives'
complete -c dbctl -n "__fish_dbctl_needs_command" -l events -d 'With `-o json`: stream progress as JSON Lines on stdout (`status`, `step`, `progress`, `done`, `output` events, then the report as a `result` event, or an `error` event), for a CI system to follow'
complete -c dbctl -n "__fish_dbctl_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dbctl -n "__fish_dbctl_needs_command" -s V -l version -d 'Print version'
complete -c dbctl -n "__fish_dbctl_needs_command" -f -a "init" -d 'Scaffold a GitOps repo (git, etc/dbctl.yml, an age identity)'
complete -c dbctl -n "__fish_dbctl_needs_command" -f -a "create" -d 'Create a database: write its spec, run it, commit its connection file'
complete -c dbctl -n "__fish_dbctl_needs_command" -f -a "plan" -d 'Show what `apply` would change: every spec against what runs'
complete -c dbctl -n "__fish_dbctl_needs_command" -f -a "apply" -d 'Converge every spec of the repo, several databases at once, and commit'
complete -c dbctl -n "__fish_dbctl_needs_command" -f -a "list" -d 'List every database of the repo with its live state'
complete -c dbctl -n "__fish_dbctl_needs_command" -f -a "status" -d 'Show whether a database is up, its version, port and size'
complete -c dbctl -n "__fish_dbctl_needs_command" -f -a "connection" -d 'Print a database\'s connection file or URI'
complete -c dbctl -n "__fish_dbctl_needs_command" -f -a "delete" -d 'Delete a database: stop it, remove its data, spec and connection file'
complete -c dbctl -n "__fish_dbctl_needs_command" -f -a "resize" -d 'Grow a database\'s allotment: write the spec, apply that change, commit'
complete -c dbctl -n "__fish_dbctl_needs_command" -f -a "upgrade" -d 'Move a database to another version: write the spec, apply that change, commit'
complete -c dbctl -n "__fish_dbctl_needs_command" -f -a "scale" -d 'Give a database another plan (cpu and memory): write the spec, apply, commit'
complete -c dbctl -n "__fish_dbctl_needs_command" -f -a "sql" -d 'Run an admin batch (SQL, Redis commands) as the application owner or `--admin`'
complete -c dbctl -n "__fish_dbctl_needs_command" -f -a "rotate-credentials" -d 'New credentials without downtime: the other login gets a new password and the connection file; the previous login works until `--grace` ends or the next rotation'
complete -c dbctl -n "__fish_dbctl_needs_command" -f -a "backup" -d 'Back up a database (a physical backup, compressed and encrypted) to its store'
complete -c dbctl -n "__fish_dbctl_needs_command" -f -a "backups" -d 'List a database\'s backups with age, size and type'
complete -c dbctl -n "__fish_dbctl_needs_command" -f -a "restore" -d 'Restore a backup: in place, into a new database (`--as`) or another target'
complete -c dbctl -n "__fish_dbctl_needs_command" -f -a "wal-push" -d 'Archive one WAL file (PostgreSQL\'s `archive_command`; not for people)'
complete -c dbctl -n "__fish_dbctl_needs_command" -f -a "control-plane" -d 'Render an openstack target\'s control plane: network and Consul + Nomad masters as Heat stacks, and the inventory (hosts.ini)'
complete -c dbctl -n "__fish_dbctl_needs_command" -f -a "render" -d 'Print (or write) the artifacts dbctl renders for a database'
complete -c dbctl -n "__fish_dbctl_needs_command" -f -a "completions" -d 'Print the shell completion script for bash, zsh, fish, elvish or powershell'
complete -c dbctl -n "__fish_dbctl_needs_command" -f -a "man" -d 'Print dbctl\'s man page, or write one per command with `--out DIR`'
complete -c dbctl -n "__fish_dbctl_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c dbctl -n "__fish_dbctl_using_subcommand init" -l repo -d 'The GitOps repo (default: the current directory)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand init" -s o -l output -d 'Output format' -r -f -a "human\t'Text for people'
json\t'One JSON document on stdout'
markdown\t'Markdown on stdout, for a CI job\'s summary or a merge request\'s comment (progress on stderr as for people)'"
complete -c dbctl -n "__fish_dbctl_using_subcommand init" -l state-dir -d 'Where the `local` platform keeps database instances (default: /var/lib/dbctl for root, ~/.local/share/dbctl otherwise)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand init" -l identity -d 'The age identity file that decrypts connection files (default: ~/.config/dbctl/identity.txt)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand init" -l timeout -d 'Give up waiting on the platform after this many seconds: a Heat stack operation, resource groups starting, a server accepting connections after a (re)start (default: each wait\'s own; Heat 1800 s, groups 180 s, servers 30–120 s)' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand init" -l accept-new-host-keys -d 'Trust SSH host keys not yet in `known_hosts` (a changed key is still refused)'
complete -c dbctl -n "__fish_dbctl_using_subcommand init" -s q -l quiet -d 'No progress lines on stderr'
complete -c dbctl -n "__fish_dbctl_using_subcommand init" -s v -l verbose -d 'Show the output of the commands each step runs, as it arrives'
complete -c dbctl -n "__fish_dbctl_using_subcommand init" -l events -d 'With `-o json`: stream progress as JSON Lines on stdout (`status`, `step`, `progress`, `done`, `output` events, then the report as a `result` event, or an `error` event), for a CI system to follow'
complete -c dbctl -n "__fish_dbctl_using_subcommand init" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dbctl -n "__fish_dbctl_using_subcommand create" -s t -l type -d 'Engine: postgresql, mariadb (alias mysql), redis, mongodb' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand create" -l size -d 'Allotted data size in GB (1 to 65536; default: the plan\'s)' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand create" -l version -d 'Engine version from the catalog (default: the platform\'s, e.g. the installed one)' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand create" -l target -d 'Target from etc/dbctl.yml (default: `default_target`)' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand create" -l plan -d 'Sizing plan from the catalog (default: etc/dbctl.yml `defaults.plan`)' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand create" -l database -d 'Application database (default: the name with `-` as `_`; redis: 0)' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand create" -l user -d 'Application user (default: the name with `-` as `_`)' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand create" -l allow -d 'Network allowed to reach the database, as CIDR (repeatable)' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand create" -l param -d 'Engine parameter for the server configuration (repeatable)' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand create" -l lock-timeout -d 'Wait up to this many seconds for another run on the same database to finish (default: fail at once)' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand create" -l repo -d 'The GitOps repo (default: the current directory)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand create" -s o -l output -d 'Output format' -r -f -a "human\t'Text for people'
json\t'One JSON document on stdout'
markdown\t'Markdown on stdout, for a CI job\'s summary or a merge request\'s comment (progress on stderr as for people)'"
complete -c dbctl -n "__fish_dbctl_using_subcommand create" -l state-dir -d 'Where the `local` platform keeps database instances (default: /var/lib/dbctl for root, ~/.local/share/dbctl otherwise)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand create" -l identity -d 'The age identity file that decrypts connection files (default: ~/.config/dbctl/identity.txt)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand create" -l timeout -d 'Give up waiting on the platform after this many seconds: a Heat stack operation, resource groups starting, a server accepting connections after a (re)start (default: each wait\'s own; Heat 1800 s, groups 180 s, servers 30–120 s)' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand create" -l deletion-protection -d 'Refuse `dbctl delete` for this database'
complete -c dbctl -n "__fish_dbctl_using_subcommand create" -l no-commit -d 'Do not commit the changed files'
complete -c dbctl -n "__fish_dbctl_using_subcommand create" -l push -d 'Push the commit with the system `git push`'
complete -c dbctl -n "__fish_dbctl_using_subcommand create" -l dry-run -d 'Validate and show what would change; change nothing'
complete -c dbctl -n "__fish_dbctl_using_subcommand create" -s y -l yes -d 'Confirm without asking. `delete` and an in-place `restore` need it (they destroy data); every other changing verb accepts it, for scripts'
complete -c dbctl -n "__fish_dbctl_using_subcommand create" -l accept-new-host-keys -d 'Trust SSH host keys not yet in `known_hosts` (a changed key is still refused)'
complete -c dbctl -n "__fish_dbctl_using_subcommand create" -s q -l quiet -d 'No progress lines on stderr'
complete -c dbctl -n "__fish_dbctl_using_subcommand create" -s v -l verbose -d 'Show the output of the commands each step runs, as it arrives'
complete -c dbctl -n "__fish_dbctl_using_subcommand create" -l events -d 'With `-o json`: stream progress as JSON Lines on stdout (`status`, `step`, `progress`, `done`, `output` events, then the report as a `result` event, or an `error` event), for a CI system to follow'
complete -c dbctl -n "__fish_dbctl_using_subcommand create" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dbctl -n "__fish_dbctl_using_subcommand plan" -l parallel -d 'Databases queried at once' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand plan" -l repo -d 'The GitOps repo (default: the current directory)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand plan" -s o -l output -d 'Output format' -r -f -a "human\t'Text for people'
json\t'One JSON document on stdout'
markdown\t'Markdown on stdout, for a CI job\'s summary or a merge request\'s comment (progress on stderr as for people)'"
complete -c dbctl -n "__fish_dbctl_using_subcommand plan" -l state-dir -d 'Where the `local` platform keeps database instances (default: /var/lib/dbctl for root, ~/.local/share/dbctl otherwise)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand plan" -l identity -d 'The age identity file that decrypts connection files (default: ~/.config/dbctl/identity.txt)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand plan" -l timeout -d 'Give up waiting on the platform after this many seconds: a Heat stack operation, resource groups starting, a server accepting connections after a (re)start (default: each wait\'s own; Heat 1800 s, groups 180 s, servers 30–120 s)' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand plan" -l detailed-exitcode -d 'Exit 2 when changes are pending (0: none, 1: error)'
complete -c dbctl -n "__fish_dbctl_using_subcommand plan" -l now -d 'Plan disruptive changes to run now instead of in the maintenance window'
complete -c dbctl -n "__fish_dbctl_using_subcommand plan" -l drift -d 'Only what runs differently from what was applied (a stopped server, a setting changed outside dbctl, binaries upgraded under it); exit 2 when there is any. For a scheduled job'
complete -c dbctl -n "__fish_dbctl_using_subcommand plan" -l accept-new-host-keys -d 'Trust SSH host keys not yet in `known_hosts` (a changed key is still refused)'
complete -c dbctl -n "__fish_dbctl_using_subcommand plan" -s q -l quiet -d 'No progress lines on stderr'
complete -c dbctl -n "__fish_dbctl_using_subcommand plan" -s v -l verbose -d 'Show the output of the commands each step runs, as it arrives'
complete -c dbctl -n "__fish_dbctl_using_subcommand plan" -l events -d 'With `-o json`: stream progress as JSON Lines on stdout (`status`, `step`, `progress`, `done`, `output` events, then the report as a `result` event, or an `error` event), for a CI system to follow'
complete -c dbctl -n "__fish_dbctl_using_subcommand plan" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dbctl -n "__fish_dbctl_using_subcommand apply" -l parallel -d 'Databases converged at once (each on its own target\'s hosts)' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand apply" -l lock-timeout -d 'Wait up to this many seconds for another run on the same database to finish (default: fail at once)' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand apply" -l repo -d 'The GitOps repo (default: the current directory)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand apply" -s o -l output -d 'Output format' -r -f -a "human\t'Text for people'
json\t'One JSON document on stdout'
markdown\t'Markdown on stdout, for a CI job\'s summary or a merge request\'s comment (progress on stderr as for people)'"
complete -c dbctl -n "__fish_dbctl_using_subcommand apply" -l state-dir -d 'Where the `local` platform keeps database instances (default: /var/lib/dbctl for root, ~/.local/share/dbctl otherwise)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand apply" -l identity -d 'The age identity file that decrypts connection files (default: ~/.config/dbctl/identity.txt)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand apply" -l timeout -d 'Give up waiting on the platform after this many seconds: a Heat stack operation, resource groups starting, a server accepting connections after a (re)start (default: each wait\'s own; Heat 1800 s, groups 180 s, servers 30–120 s)' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand apply" -l no-commit -d 'Do not commit the changed files'
complete -c dbctl -n "__fish_dbctl_using_subcommand apply" -l push -d 'Push the commit with the system `git push`'
complete -c dbctl -n "__fish_dbctl_using_subcommand apply" -l dry-run -d 'Validate and show what would change; change nothing'
complete -c dbctl -n "__fish_dbctl_using_subcommand apply" -s y -l yes -d 'Confirm without asking. `delete` and an in-place `restore` need it (they destroy data); every other changing verb accepts it, for scripts'
complete -c dbctl -n "__fish_dbctl_using_subcommand apply" -l now -d 'Apply disruptive changes (restart or worse) now, not in the maintenance window'
complete -c dbctl -n "__fish_dbctl_using_subcommand apply" -l wait -d 'Stay until the maintenance window of changes left for it opens, and apply them then (Ctrl-C leaves them pending; nothing is locked while waiting)'
complete -c dbctl -n "__fish_dbctl_using_subcommand apply" -l accept-new-host-keys -d 'Trust SSH host keys not yet in `known_hosts` (a changed key is still refused)'
complete -c dbctl -n "__fish_dbctl_using_subcommand apply" -s q -l quiet -d 'No progress lines on stderr'
complete -c dbctl -n "__fish_dbctl_using_subcommand apply" -s v -l verbose -d 'Show the output of the commands each step runs, as it arrives'
complete -c dbctl -n "__fish_dbctl_using_subcommand apply" -l events -d 'With `-o json`: stream progress as JSON Lines on stdout (`status`, `step`, `progress`, `done`, `output` events, then the report as a `result` event, or an `error` event), for a CI system to follow'
complete -c dbctl -n "__fish_dbctl_using_subcommand apply" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dbctl -n "__fish_dbctl_using_subcommand list" -l repo -d 'The GitOps repo (default: the current directory)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand list" -s o -l output -d 'Output format' -r -f -a "human\t'Text for people'
json\t'One JSON document on stdout'
markdown\t'Markdown on stdout, for a CI job\'s summary or a merge request\'s comment (progress on stderr as for people)'"
complete -c dbctl -n "__fish_dbctl_using_subcommand list" -l state-dir -d 'Where the `local` platform keeps database instances (default: /var/lib/dbctl for root, ~/.local/share/dbctl otherwise)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand list" -l identity -d 'The age identity file that decrypts connection files (default: ~/.config/dbctl/identity.txt)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand list" -l timeout -d 'Give up waiting on the platform after this many seconds: a Heat stack operation, resource groups starting, a server accepting connections after a (re)start (default: each wait\'s own; Heat 1800 s, groups 180 s, servers 30–120 s)' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand list" -l accept-new-host-keys -d 'Trust SSH host keys not yet in `known_hosts` (a changed key is still refused)'
complete -c dbctl -n "__fish_dbctl_using_subcommand list" -s q -l quiet -d 'No progress lines on stderr'
complete -c dbctl -n "__fish_dbctl_using_subcommand list" -s v -l verbose -d 'Show the output of the commands each step runs, as it arrives'
complete -c dbctl -n "__fish_dbctl_using_subcommand list" -l events -d 'With `-o json`: stream progress as JSON Lines on stdout (`status`, `step`, `progress`, `done`, `output` events, then the report as a `result` event, or an `error` event), for a CI system to follow'
complete -c dbctl -n "__fish_dbctl_using_subcommand list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dbctl -n "__fish_dbctl_using_subcommand status" -l html -d 'With `--all`: also write the page `DIR/index.html` (static: a sortable table and a chart of size and backup age)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand status" -l repo -d 'The GitOps repo (default: the current directory)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand status" -s o -l output -d 'Output format' -r -f -a "human\t'Text for people'
json\t'One JSON document on stdout'
markdown\t'Markdown on stdout, for a CI job\'s summary or a merge request\'s comment (progress on stderr as for people)'"
complete -c dbctl -n "__fish_dbctl_using_subcommand status" -l state-dir -d 'Where the `local` platform keeps database instances (default: /var/lib/dbctl for root, ~/.local/share/dbctl otherwise)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand status" -l identity -d 'The age identity file that decrypts connection files (default: ~/.config/dbctl/identity.txt)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand status" -l timeout -d 'Give up waiting on the platform after this many seconds: a Heat stack operation, resource groups starting, a server accepting connections after a (re)start (default: each wait\'s own; Heat 1800 s, groups 180 s, servers 30–120 s)' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand status" -l all -d 'Every database of the repo: state, size used of the allotment, last backup and its age, last restore drill and its RTO, maintenance waiting for its window'
complete -c dbctl -n "__fish_dbctl_using_subcommand status" -l exit-code -d 'Exit with 3 unless the database is up (down, or not created): for scripts and health checks'
complete -c dbctl -n "__fish_dbctl_using_subcommand status" -l accept-new-host-keys -d 'Trust SSH host keys not yet in `known_hosts` (a changed key is still refused)'
complete -c dbctl -n "__fish_dbctl_using_subcommand status" -s q -l quiet -d 'No progress lines on stderr'
complete -c dbctl -n "__fish_dbctl_using_subcommand status" -s v -l verbose -d 'Show the output of the commands each step runs, as it arrives'
complete -c dbctl -n "__fish_dbctl_using_subcommand status" -l events -d 'With `-o json`: stream progress as JSON Lines on stdout (`status`, `step`, `progress`, `done`, `output` events, then the report as a `result` event, or an `error` event), for a CI system to follow'
complete -c dbctl -n "__fish_dbctl_using_subcommand status" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dbctl -n "__fish_dbctl_using_subcommand connection" -l format -d 'How to print it' -r -f -a "yaml\t'The connection file\'s YAML'
uri\t'A URI (`postgresql://user:password@host:port/db` with `--reveal`)'
env\t'Shell `KEY=value` lines (`DATABASE_URL`, `DB_HOST`, …)'"
complete -c dbctl -n "__fish_dbctl_using_subcommand connection" -l repo -d 'The GitOps repo (default: the current directory)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand connection" -s o -l output -d 'Output format' -r -f -a "human\t'Text for people'
json\t'One JSON document on stdout'
markdown\t'Markdown on stdout, for a CI job\'s summary or a merge request\'s comment (progress on stderr as for people)'"
complete -c dbctl -n "__fish_dbctl_using_subcommand connection" -l state-dir -d 'Where the `local` platform keeps database instances (default: /var/lib/dbctl for root, ~/.local/share/dbctl otherwise)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand connection" -l identity -d 'The age identity file that decrypts connection files (default: ~/.config/dbctl/identity.txt)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand connection" -l timeout -d 'Give up waiting on the platform after this many seconds: a Heat stack operation, resource groups starting, a server accepting connections after a (re)start (default: each wait\'s own; Heat 1800 s, groups 180 s, servers 30–120 s)' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand connection" -l reveal -d 'Decrypt the password with your age identity'
complete -c dbctl -n "__fish_dbctl_using_subcommand connection" -l accept-new-host-keys -d 'Trust SSH host keys not yet in `known_hosts` (a changed key is still refused)'
complete -c dbctl -n "__fish_dbctl_using_subcommand connection" -s q -l quiet -d 'No progress lines on stderr'
complete -c dbctl -n "__fish_dbctl_using_subcommand connection" -s v -l verbose -d 'Show the output of the commands each step runs, as it arrives'
complete -c dbctl -n "__fish_dbctl_using_subcommand connection" -l events -d 'With `-o json`: stream progress as JSON Lines on stdout (`status`, `step`, `progress`, `done`, `output` events, then the report as a `result` event, or an `error` event), for a CI system to follow'
complete -c dbctl -n "__fish_dbctl_using_subcommand connection" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dbctl -n "__fish_dbctl_using_subcommand delete" -l store -d 'The store the final backup goes to (default: the database\'s; see `dbctl backup`)' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand delete" -l lock-timeout -d 'Wait up to this many seconds for another run on the same database to finish (default: fail at once)' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand delete" -l repo -d 'The GitOps repo (default: the current directory)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand delete" -s o -l output -d 'Output format' -r -f -a "human\t'Text for people'
json\t'One JSON document on stdout'
markdown\t'Markdown on stdout, for a CI job\'s summary or a merge request\'s comment (progress on stderr as for people)'"
complete -c dbctl -n "__fish_dbctl_using_subcommand delete" -l state-dir -d 'Where the `local` platform keeps database instances (default: /var/lib/dbctl for root, ~/.local/share/dbctl otherwise)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand delete" -l identity -d 'The age identity file that decrypts connection files (default: ~/.config/dbctl/identity.txt)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand delete" -l timeout -d 'Give up waiting on the platform after this many seconds: a Heat stack operation, resource groups starting, a server accepting connections after a (re)start (default: each wait\'s own; Heat 1800 s, groups 180 s, servers 30–120 s)' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand delete" -l skip-final-backup -d 'Delete without first backing up to the database\'s backup store'
complete -c dbctl -n "__fish_dbctl_using_subcommand delete" -l no-commit -d 'Do not commit the changed files'
complete -c dbctl -n "__fish_dbctl_using_subcommand delete" -l push -d 'Push the commit with the system `git push`'
complete -c dbctl -n "__fish_dbctl_using_subcommand delete" -l dry-run -d 'Validate and show what would change; change nothing'
complete -c dbctl -n "__fish_dbctl_using_subcommand delete" -s y -l yes -d 'Confirm without asking. `delete` and an in-place `restore` need it (they destroy data); every other changing verb accepts it, for scripts'
complete -c dbctl -n "__fish_dbctl_using_subcommand delete" -l accept-new-host-keys -d 'Trust SSH host keys not yet in `known_hosts` (a changed key is still refused)'
complete -c dbctl -n "__fish_dbctl_using_subcommand delete" -s q -l quiet -d 'No progress lines on stderr'
complete -c dbctl -n "__fish_dbctl_using_subcommand delete" -s v -l verbose -d 'Show the output of the commands each step runs, as it arrives'
complete -c dbctl -n "__fish_dbctl_using_subcommand delete" -l events -d 'With `-o json`: stream progress as JSON Lines on stdout (`status`, `step`, `progress`, `done`, `output` events, then the report as a `result` event, or an `error` event), for a CI system to follow'
complete -c dbctl -n "__fish_dbctl_using_subcommand delete" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dbctl -n "__fish_dbctl_using_subcommand resize" -l size -d 'The new size in GB (grow only)' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand resize" -l lock-timeout -d 'Wait up to this many seconds for another run on the same database to finish (default: fail at once)' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand resize" -l repo -d 'The GitOps repo (default: the current directory)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand resize" -s o -l output -d 'Output format' -r -f -a "human\t'Text for people'
json\t'One JSON document on stdout'
markdown\t'Markdown on stdout, for a CI job\'s summary or a merge request\'s comment (progress on stderr as for people)'"
complete -c dbctl -n "__fish_dbctl_using_subcommand resize" -l state-dir -d 'Where the `local` platform keeps database instances (default: /var/lib/dbctl for root, ~/.local/share/dbctl otherwise)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand resize" -l identity -d 'The age identity file that decrypts connection files (default: ~/.config/dbctl/identity.txt)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand resize" -l timeout -d 'Give up waiting on the platform after this many seconds: a Heat stack operation, resource groups starting, a server accepting connections after a (re)start (default: each wait\'s own; Heat 1800 s, groups 180 s, servers 30–120 s)' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand resize" -l now -d 'Apply a disruptive change now, not in the maintenance window'
complete -c dbctl -n "__fish_dbctl_using_subcommand resize" -l no-commit -d 'Do not commit the changed files'
complete -c dbctl -n "__fish_dbctl_using_subcommand resize" -l push -d 'Push the commit with the system `git push`'
complete -c dbctl -n "__fish_dbctl_using_subcommand resize" -l dry-run -d 'Validate and show what would change; change nothing'
complete -c dbctl -n "__fish_dbctl_using_subcommand resize" -s y -l yes -d 'Confirm without asking. `delete` and an in-place `restore` need it (they destroy data); every other changing verb accepts it, for scripts'
complete -c dbctl -n "__fish_dbctl_using_subcommand resize" -l accept-new-host-keys -d 'Trust SSH host keys not yet in `known_hosts` (a changed key is still refused)'
complete -c dbctl -n "__fish_dbctl_using_subcommand resize" -s q -l quiet -d 'No progress lines on stderr'
complete -c dbctl -n "__fish_dbctl_using_subcommand resize" -s v -l verbose -d 'Show the output of the commands each step runs, as it arrives'
complete -c dbctl -n "__fish_dbctl_using_subcommand resize" -l events -d 'With `-o json`: stream progress as JSON Lines on stdout (`status`, `step`, `progress`, `done`, `output` events, then the report as a `result` event, or an `error` event), for a CI system to follow'
complete -c dbctl -n "__fish_dbctl_using_subcommand resize" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dbctl -n "__fish_dbctl_using_subcommand upgrade" -l version -d 'The version series from the catalog (`15`, `10.11`)' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand upgrade" -l lock-timeout -d 'Wait up to this many seconds for another run on the same database to finish (default: fail at once)' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand upgrade" -l repo -d 'The GitOps repo (default: the current directory)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand upgrade" -s o -l output -d 'Output format' -r -f -a "human\t'Text for people'
json\t'One JSON document on stdout'
markdown\t'Markdown on stdout, for a CI job\'s summary or a merge request\'s comment (progress on stderr as for people)'"
complete -c dbctl -n "__fish_dbctl_using_subcommand upgrade" -l state-dir -d 'Where the `local` platform keeps database instances (default: /var/lib/dbctl for root, ~/.local/share/dbctl otherwise)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand upgrade" -l identity -d 'The age identity file that decrypts connection files (default: ~/.config/dbctl/identity.txt)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand upgrade" -l timeout -d 'Give up waiting on the platform after this many seconds: a Heat stack operation, resource groups starting, a server accepting connections after a (re)start (default: each wait\'s own; Heat 1800 s, groups 180 s, servers 30–120 s)' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand upgrade" -l now -d 'Apply the restart now, not in the maintenance window'
complete -c dbctl -n "__fish_dbctl_using_subcommand upgrade" -l no-commit -d 'Do not commit the changed files'
complete -c dbctl -n "__fish_dbctl_using_subcommand upgrade" -l push -d 'Push the commit with the system `git push`'
complete -c dbctl -n "__fish_dbctl_using_subcommand upgrade" -l dry-run -d 'Validate and show what would change; change nothing'
complete -c dbctl -n "__fish_dbctl_using_subcommand upgrade" -s y -l yes -d 'Confirm without asking. `delete` and an in-place `restore` need it (they destroy data); every other changing verb accepts it, for scripts'
complete -c dbctl -n "__fish_dbctl_using_subcommand upgrade" -l accept-new-host-keys -d 'Trust SSH host keys not yet in `known_hosts` (a changed key is still refused)'
complete -c dbctl -n "__fish_dbctl_using_subcommand upgrade" -s q -l quiet -d 'No progress lines on stderr'
complete -c dbctl -n "__fish_dbctl_using_subcommand upgrade" -s v -l verbose -d 'Show the output of the commands each step runs, as it arrives'
complete -c dbctl -n "__fish_dbctl_using_subcommand upgrade" -l events -d 'With `-o json`: stream progress as JSON Lines on stdout (`status`, `step`, `progress`, `done`, `output` events, then the report as a `result` event, or an `error` event), for a CI system to follow'
complete -c dbctl -n "__fish_dbctl_using_subcommand upgrade" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dbctl -n "__fish_dbctl_using_subcommand scale" -l plan -d 'The plan from the catalog (`small`, `medium`, …): cpu and memory' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand scale" -l lock-timeout -d 'Wait up to this many seconds for another run on the same database to finish (default: fail at once)' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand scale" -l repo -d 'The GitOps repo (default: the current directory)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand scale" -s o -l output -d 'Output format' -r -f -a "human\t'Text for people'
json\t'One JSON document on stdout'
markdown\t'Markdown on stdout, for a CI job\'s summary or a merge request\'s comment (progress on stderr as for people)'"
complete -c dbctl -n "__fish_dbctl_using_subcommand scale" -l state-dir -d 'Where the `local` platform keeps database instances (default: /var/lib/dbctl for root, ~/.local/share/dbctl otherwise)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand scale" -l identity -d 'The age identity file that decrypts connection files (default: ~/.config/dbctl/identity.txt)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand scale" -l timeout -d 'Give up waiting on the platform after this many seconds: a Heat stack operation, resource groups starting, a server accepting connections after a (re)start (default: each wait\'s own; Heat 1800 s, groups 180 s, servers 30–120 s)' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand scale" -l now -d 'Apply a restart-class change now, not in the maintenance window'
complete -c dbctl -n "__fish_dbctl_using_subcommand scale" -l no-commit -d 'Do not commit the changed files'
complete -c dbctl -n "__fish_dbctl_using_subcommand scale" -l push -d 'Push the commit with the system `git push`'
complete -c dbctl -n "__fish_dbctl_using_subcommand scale" -l dry-run -d 'Validate and show what would change; change nothing'
complete -c dbctl -n "__fish_dbctl_using_subcommand scale" -s y -l yes -d 'Confirm without asking. `delete` and an in-place `restore` need it (they destroy data); every other changing verb accepts it, for scripts'
complete -c dbctl -n "__fish_dbctl_using_subcommand scale" -l accept-new-host-keys -d 'Trust SSH host keys not yet in `known_hosts` (a changed key is still refused)'
complete -c dbctl -n "__fish_dbctl_using_subcommand scale" -s q -l quiet -d 'No progress lines on stderr'
complete -c dbctl -n "__fish_dbctl_using_subcommand scale" -s v -l verbose -d 'Show the output of the commands each step runs, as it arrives'
complete -c dbctl -n "__fish_dbctl_using_subcommand scale" -l events -d 'With `-o json`: stream progress as JSON Lines on stdout (`status`, `step`, `progress`, `done`, `output` events, then the report as a `result` event, or an `error` event), for a CI system to follow'
complete -c dbctl -n "__fish_dbctl_using_subcommand scale" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dbctl -n "__fish_dbctl_using_subcommand sql" -s c -l command -d 'The batch to run (SQL; Redis commands, one a line)' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand sql" -s f -l file -d 'Read the batch from FILE (`-`: stdin). Without `-c` or `-f`, stdin' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand sql" -l repo -d 'The GitOps repo (default: the current directory)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand sql" -s o -l output -d 'Output format' -r -f -a "human\t'Text for people'
json\t'One JSON document on stdout'
markdown\t'Markdown on stdout, for a CI job\'s summary or a merge request\'s comment (progress on stderr as for people)'"
complete -c dbctl -n "__fish_dbctl_using_subcommand sql" -l state-dir -d 'Where the `local` platform keeps database instances (default: /var/lib/dbctl for root, ~/.local/share/dbctl otherwise)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand sql" -l identity -d 'The age identity file that decrypts connection files (default: ~/.config/dbctl/identity.txt)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand sql" -l timeout -d 'Give up waiting on the platform after this many seconds: a Heat stack operation, resource groups starting, a server accepting connections after a (re)start (default: each wait\'s own; Heat 1800 s, groups 180 s, servers 30–120 s)' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand sql" -l admin -d 'As the engine\'s administrator instead of the application owner'
complete -c dbctl -n "__fish_dbctl_using_subcommand sql" -l accept-new-host-keys -d 'Trust SSH host keys not yet in `known_hosts` (a changed key is still refused)'
complete -c dbctl -n "__fish_dbctl_using_subcommand sql" -s q -l quiet -d 'No progress lines on stderr'
complete -c dbctl -n "__fish_dbctl_using_subcommand sql" -s v -l verbose -d 'Show the output of the commands each step runs, as it arrives'
complete -c dbctl -n "__fish_dbctl_using_subcommand sql" -l events -d 'With `-o json`: stream progress as JSON Lines on stdout (`status`, `step`, `progress`, `done`, `output` events, then the report as a `result` event, or an `error` event), for a CI system to follow'
complete -c dbctl -n "__fish_dbctl_using_subcommand sql" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dbctl -n "__fish_dbctl_using_subcommand rotate-credentials" -l grace -d 'Retire the previous login this many seconds after the new connection file is committed (default: at the next rotation)' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand rotate-credentials" -l lock-timeout -d 'Wait up to this many seconds for another run on the same database to finish (default: fail at once)' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand rotate-credentials" -l repo -d 'The GitOps repo (default: the current directory)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand rotate-credentials" -s o -l output -d 'Output format' -r -f -a "human\t'Text for people'
json\t'One JSON document on stdout'
markdown\t'Markdown on stdout, for a CI job\'s summary or a merge request\'s comment (progress on stderr as for people)'"
complete -c dbctl -n "__fish_dbctl_using_subcommand rotate-credentials" -l state-dir -d 'Where the `local` platform keeps database instances (default: /var/lib/dbctl for root, ~/.local/share/dbctl otherwise)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand rotate-credentials" -l identity -d 'The age identity file that decrypts connection files (default: ~/.config/dbctl/identity.txt)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand rotate-credentials" -l timeout -d 'Give up waiting on the platform after this many seconds: a Heat stack operation, resource groups starting, a server accepting connections after a (re)start (default: each wait\'s own; Heat 1800 s, groups 180 s, servers 30–120 s)' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand rotate-credentials" -l no-commit -d 'Do not commit the changed files'
complete -c dbctl -n "__fish_dbctl_using_subcommand rotate-credentials" -l push -d 'Push the commit with the system `git push`'
complete -c dbctl -n "__fish_dbctl_using_subcommand rotate-credentials" -l dry-run -d 'Validate and show what would change; change nothing'
complete -c dbctl -n "__fish_dbctl_using_subcommand rotate-credentials" -s y -l yes -d 'Confirm without asking. `delete` and an in-place `restore` need it (they destroy data); every other changing verb accepts it, for scripts'
complete -c dbctl -n "__fish_dbctl_using_subcommand rotate-credentials" -l accept-new-host-keys -d 'Trust SSH host keys not yet in `known_hosts` (a changed key is still refused)'
complete -c dbctl -n "__fish_dbctl_using_subcommand rotate-credentials" -s q -l quiet -d 'No progress lines on stderr'
complete -c dbctl -n "__fish_dbctl_using_subcommand rotate-credentials" -s v -l verbose -d 'Show the output of the commands each step runs, as it arrives'
complete -c dbctl -n "__fish_dbctl_using_subcommand rotate-credentials" -l events -d 'With `-o json`: stream progress as JSON Lines on stdout (`status`, `step`, `progress`, `done`, `output` events, then the report as a `result` event, or an `error` event), for a CI system to follow'
complete -c dbctl -n "__fish_dbctl_using_subcommand rotate-credentials" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dbctl -n "__fish_dbctl_using_subcommand backup; and not __fish_seen_subcommand_from verify" -l store -d 'The backup store (a name under `backup_stores` in etc/dbctl.yml)' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand backup; and not __fish_seen_subcommand_from verify" -l type -d '`full`, or `incr`: only what changed since the latest backup in the store (PostgreSQL 17 and later, MariaDB; restored with the backups it is built on)' -r -f -a "full\t'Everything (a base backup, a full mariadb-backup, an RDB)'
incr\t'What changed since the backup it is built on (`parent`): PostgreSQL 17\'s `pg_basebackup --incremental` from the WAL summaries, MariaDB\'s `mariadb-backup --incremental-lsn`; restored as the chain from its full backup (`pg_combinebackup`; `mariadb-backup --prepare --incremental-dir`)'"
complete -c dbctl -n "__fish_dbctl_using_subcommand backup; and not __fish_seen_subcommand_from verify" -l lock-timeout -d 'Wait up to this many seconds for another run on the same database to finish (default: fail at once)' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand backup; and not __fish_seen_subcommand_from verify" -l repo -d 'The GitOps repo (default: the current directory)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand backup; and not __fish_seen_subcommand_from verify" -s o -l output -d 'Output format' -r -f -a "human\t'Text for people'
json\t'One JSON document on stdout'
markdown\t'Markdown on stdout, for a CI job\'s summary or a merge request\'s comment (progress on stderr as for people)'"
complete -c dbctl -n "__fish_dbctl_using_subcommand backup; and not __fish_seen_subcommand_from verify" -l state-dir -d 'Where the `local` platform keeps database instances (default: /var/lib/dbctl for root, ~/.local/share/dbctl otherwise)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand backup; and not __fish_seen_subcommand_from verify" -l identity -d 'The age identity file that decrypts connection files (default: ~/.config/dbctl/identity.txt)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand backup; and not __fish_seen_subcommand_from verify" -l timeout -d 'Give up waiting on the platform after this many seconds: a Heat stack operation, resource groups starting, a server accepting connections after a (re)start (default: each wait\'s own; Heat 1800 s, groups 180 s, servers 30–120 s)' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand backup; and not __fish_seen_subcommand_from verify" -l dry-run -d 'Resolve and open the store, check the platform; say what would be backed up and where; change nothing'
complete -c dbctl -n "__fish_dbctl_using_subcommand backup; and not __fish_seen_subcommand_from verify" -l accept-new-host-keys -d 'Trust SSH host keys not yet in `known_hosts` (a changed key is still refused)'
complete -c dbctl -n "__fish_dbctl_using_subcommand backup; and not __fish_seen_subcommand_from verify" -s q -l quiet -d 'No progress lines on stderr'
complete -c dbctl -n "__fish_dbctl_using_subcommand backup; and not __fish_seen_subcommand_from verify" -s v -l verbose -d 'Show the output of the commands each step runs, as it arrives'
complete -c dbctl -n "__fish_dbctl_using_subcommand backup; and not __fish_seen_subcommand_from verify" -l events -d 'With `-o json`: stream progress as JSON Lines on stdout (`status`, `step`, `progress`, `done`, `output` events, then the report as a `result` event, or an `error` event), for a CI system to follow'
complete -c dbctl -n "__fish_dbctl_using_subcommand backup; and not __fish_seen_subcommand_from verify" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dbctl -n "__fish_dbctl_using_subcommand backup; and not __fish_seen_subcommand_from verify" -a "verify" -d 'A restore drill: restore a backup into a scratch database, check it, remove it, and record the result and the recovery time in the backup\'s manifest'
complete -c dbctl -n "__fish_dbctl_using_subcommand backup; and __fish_seen_subcommand_from verify" -l backup -d 'The backup\'s id (default: the latest)' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand backup; and __fish_seen_subcommand_from verify" -l store -d 'The backup store (default: the database\'s)' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand backup; and __fish_seen_subcommand_from verify" -l target -d 'Run the scratch database on this target (default: the database\'s)' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand backup; and __fish_seen_subcommand_from verify" -l query -d 'A batch for the engine\'s client (SQL, Redis commands), run as its administrator in the restored database; the drill fails unless it exits 0' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand backup; and __fish_seen_subcommand_from verify" -l expect -d 'The last line `--query` prints must be this' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand backup; and __fish_seen_subcommand_from verify" -l lock-timeout -d 'Wait up to this many seconds for another run on the same database to finish (default: fail at once)' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand backup; and __fish_seen_subcommand_from verify" -l repo -d 'The GitOps repo (default: the current directory)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand backup; and __fish_seen_subcommand_from verify" -s o -l output -d 'Output format' -r -f -a "human\t'Text for people'
json\t'One JSON document on stdout'
markdown\t'Markdown on stdout, for a CI job\'s summary or a merge request\'s comment (progress on stderr as for people)'"
complete -c dbctl -n "__fish_dbctl_using_subcommand backup; and __fish_seen_subcommand_from verify" -l state-dir -d 'Where the `local` platform keeps database instances (default: /var/lib/dbctl for root, ~/.local/share/dbctl otherwise)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand backup; and __fish_seen_subcommand_from verify" -l identity -d 'The age identity file that decrypts connection files (default: ~/.config/dbctl/identity.txt)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand backup; and __fish_seen_subcommand_from verify" -l timeout -d 'Give up waiting on the platform after this many seconds: a Heat stack operation, resource groups starting, a server accepting connections after a (re)start (default: each wait\'s own; Heat 1800 s, groups 180 s, servers 30–120 s)' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand backup; and __fish_seen_subcommand_from verify" -l accept-new-host-keys -d 'Trust SSH host keys not yet in `known_hosts` (a changed key is still refused)'
complete -c dbctl -n "__fish_dbctl_using_subcommand backup; and __fish_seen_subcommand_from verify" -s q -l quiet -d 'No progress lines on stderr'
complete -c dbctl -n "__fish_dbctl_using_subcommand backup; and __fish_seen_subcommand_from verify" -s v -l verbose -d 'Show the output of the commands each step runs, as it arrives'
complete -c dbctl -n "__fish_dbctl_using_subcommand backup; and __fish_seen_subcommand_from verify" -l events -d 'With `-o json`: stream progress as JSON Lines on stdout (`status`, `step`, `progress`, `done`, `output` events, then the report as a `result` event, or an `error` event), for a CI system to follow'
complete -c dbctl -n "__fish_dbctl_using_subcommand backup; and __fish_seen_subcommand_from verify" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dbctl -n "__fish_dbctl_using_subcommand backups" -l store -d 'The backup store (default: the database\'s)' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand backups" -l repo -d 'The GitOps repo (default: the current directory)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand backups" -s o -l output -d 'Output format' -r -f -a "human\t'Text for people'
json\t'One JSON document on stdout'
markdown\t'Markdown on stdout, for a CI job\'s summary or a merge request\'s comment (progress on stderr as for people)'"
complete -c dbctl -n "__fish_dbctl_using_subcommand backups" -l state-dir -d 'Where the `local` platform keeps database instances (default: /var/lib/dbctl for root, ~/.local/share/dbctl otherwise)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand backups" -l identity -d 'The age identity file that decrypts connection files (default: ~/.config/dbctl/identity.txt)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand backups" -l timeout -d 'Give up waiting on the platform after this many seconds: a Heat stack operation, resource groups starting, a server accepting connections after a (re)start (default: each wait\'s own; Heat 1800 s, groups 180 s, servers 30–120 s)' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand backups" -l expire -d 'First remove the backups the spec\'s `backup.retention` lets go'
complete -c dbctl -n "__fish_dbctl_using_subcommand backups" -l accept-new-host-keys -d 'Trust SSH host keys not yet in `known_hosts` (a changed key is still refused)'
complete -c dbctl -n "__fish_dbctl_using_subcommand backups" -s q -l quiet -d 'No progress lines on stderr'
complete -c dbctl -n "__fish_dbctl_using_subcommand backups" -s v -l verbose -d 'Show the output of the commands each step runs, as it arrives'
complete -c dbctl -n "__fish_dbctl_using_subcommand backups" -l events -d 'With `-o json`: stream progress as JSON Lines on stdout (`status`, `step`, `progress`, `done`, `output` events, then the report as a `result` event, or an `error` event), for a CI system to follow'
complete -c dbctl -n "__fish_dbctl_using_subcommand backups" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dbctl -n "__fish_dbctl_using_subcommand restore" -l backup -d 'The backup\'s id (see `dbctl backups`; default: the latest)' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand restore" -l store -d 'The backup store (default: the database\'s)' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand restore" -l as -d 'Restore into a new database of this name (keeping the database and user names the data holds) instead of in place' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand restore" -l to-time -d 'Point-in-time recovery (PostgreSQL): replay archived WAL up to this time, from the latest backup before it: RFC 3339, or a time and an IANA zone (`"2026-12-02 10:15 Europe/Paris"`)' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand restore" -l target -d 'Restore into this target (disaster recovery: without `--as`, the database\'s spec moves there and its connection file is rewritten)' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand restore" -l lock-timeout -d 'Wait up to this many seconds for another run on the same database to finish (default: fail at once)' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand restore" -l repo -d 'The GitOps repo (default: the current directory)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand restore" -s o -l output -d 'Output format' -r -f -a "human\t'Text for people'
json\t'One JSON document on stdout'
markdown\t'Markdown on stdout, for a CI job\'s summary or a merge request\'s comment (progress on stderr as for people)'"
complete -c dbctl -n "__fish_dbctl_using_subcommand restore" -l state-dir -d 'Where the `local` platform keeps database instances (default: /var/lib/dbctl for root, ~/.local/share/dbctl otherwise)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand restore" -l identity -d 'The age identity file that decrypts connection files (default: ~/.config/dbctl/identity.txt)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand restore" -l timeout -d 'Give up waiting on the platform after this many seconds: a Heat stack operation, resource groups starting, a server accepting connections after a (re)start (default: each wait\'s own; Heat 1800 s, groups 180 s, servers 30–120 s)' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand restore" -l no-commit -d 'Do not commit the changed files'
complete -c dbctl -n "__fish_dbctl_using_subcommand restore" -l push -d 'Push the commit with the system `git push`'
complete -c dbctl -n "__fish_dbctl_using_subcommand restore" -l dry-run -d 'Validate and show what would change; change nothing'
complete -c dbctl -n "__fish_dbctl_using_subcommand restore" -s y -l yes -d 'Confirm without asking. `delete` and an in-place `restore` need it (they destroy data); every other changing verb accepts it, for scripts'
complete -c dbctl -n "__fish_dbctl_using_subcommand restore" -l accept-new-host-keys -d 'Trust SSH host keys not yet in `known_hosts` (a changed key is still refused)'
complete -c dbctl -n "__fish_dbctl_using_subcommand restore" -s q -l quiet -d 'No progress lines on stderr'
complete -c dbctl -n "__fish_dbctl_using_subcommand restore" -s v -l verbose -d 'Show the output of the commands each step runs, as it arrives'
complete -c dbctl -n "__fish_dbctl_using_subcommand restore" -l events -d 'With `-o json`: stream progress as JSON Lines on stdout (`status`, `step`, `progress`, `done`, `output` events, then the report as a `result` event, or an `error` event), for a CI system to follow'
complete -c dbctl -n "__fish_dbctl_using_subcommand restore" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dbctl -n "__fish_dbctl_using_subcommand wal-push" -l config -d 'The instance\'s `conf/wal-push.json`' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand wal-push" -l repo -d 'The GitOps repo (default: the current directory)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand wal-push" -s o -l output -d 'Output format' -r -f -a "human\t'Text for people'
json\t'One JSON document on stdout'
markdown\t'Markdown on stdout, for a CI job\'s summary or a merge request\'s comment (progress on stderr as for people)'"
complete -c dbctl -n "__fish_dbctl_using_subcommand wal-push" -l state-dir -d 'Where the `local` platform keeps database instances (default: /var/lib/dbctl for root, ~/.local/share/dbctl otherwise)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand wal-push" -l identity -d 'The age identity file that decrypts connection files (default: ~/.config/dbctl/identity.txt)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand wal-push" -l timeout -d 'Give up waiting on the platform after this many seconds: a Heat stack operation, resource groups starting, a server accepting connections after a (re)start (default: each wait\'s own; Heat 1800 s, groups 180 s, servers 30–120 s)' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand wal-push" -l check -d 'Only check that the store can be reached and listed with the configuration'
complete -c dbctl -n "__fish_dbctl_using_subcommand wal-push" -l accept-new-host-keys -d 'Trust SSH host keys not yet in `known_hosts` (a changed key is still refused)'
complete -c dbctl -n "__fish_dbctl_using_subcommand wal-push" -s q -l quiet -d 'No progress lines on stderr'
complete -c dbctl -n "__fish_dbctl_using_subcommand wal-push" -s v -l verbose -d 'Show the output of the commands each step runs, as it arrives'
complete -c dbctl -n "__fish_dbctl_using_subcommand wal-push" -l events -d 'With `-o json`: stream progress as JSON Lines on stdout (`status`, `step`, `progress`, `done`, `output` events, then the report as a `result` event, or an `error` event), for a CI system to follow'
complete -c dbctl -n "__fish_dbctl_using_subcommand wal-push" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dbctl -n "__fish_dbctl_using_subcommand control-plane" -l target -d 'The openstack target whose control plane to render' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand control-plane" -l out -d 'Write the artifacts under this directory instead of printing them' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand control-plane" -l lock-timeout -d 'Wait up to this many seconds for another run on the same database to finish (default: fail at once)' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand control-plane" -l repo -d 'The GitOps repo (default: the current directory)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand control-plane" -s o -l output -d 'Output format' -r -f -a "human\t'Text for people'
json\t'One JSON document on stdout'
markdown\t'Markdown on stdout, for a CI job\'s summary or a merge request\'s comment (progress on stderr as for people)'"
complete -c dbctl -n "__fish_dbctl_using_subcommand control-plane" -l state-dir -d 'Where the `local` platform keeps database instances (default: /var/lib/dbctl for root, ~/.local/share/dbctl otherwise)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand control-plane" -l identity -d 'The age identity file that decrypts connection files (default: ~/.config/dbctl/identity.txt)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand control-plane" -l timeout -d 'Give up waiting on the platform after this many seconds: a Heat stack operation, resource groups starting, a server accepting connections after a (re)start (default: each wait\'s own; Heat 1800 s, groups 180 s, servers 30–120 s)' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand control-plane" -l apply -d 'Create or update the stacks through Heat, wait for them, and write and commit `inventory/<target>/hosts.ini` with their addresses'
complete -c dbctl -n "__fish_dbctl_using_subcommand control-plane" -l no-commit -d 'Do not commit the changed files'
complete -c dbctl -n "__fish_dbctl_using_subcommand control-plane" -l push -d 'Push the commit with the system `git push`'
complete -c dbctl -n "__fish_dbctl_using_subcommand control-plane" -l dry-run -d 'Validate and show what would change; change nothing'
complete -c dbctl -n "__fish_dbctl_using_subcommand control-plane" -s y -l yes -d 'Confirm without asking. `delete` and an in-place `restore` need it (they destroy data); every other changing verb accepts it, for scripts'
complete -c dbctl -n "__fish_dbctl_using_subcommand control-plane" -l accept-new-host-keys -d 'Trust SSH host keys not yet in `known_hosts` (a changed key is still refused)'
complete -c dbctl -n "__fish_dbctl_using_subcommand control-plane" -s q -l quiet -d 'No progress lines on stderr'
complete -c dbctl -n "__fish_dbctl_using_subcommand control-plane" -s v -l verbose -d 'Show the output of the commands each step runs, as it arrives'
complete -c dbctl -n "__fish_dbctl_using_subcommand control-plane" -l events -d 'With `-o json`: stream progress as JSON Lines on stdout (`status`, `step`, `progress`, `done`, `output` events, then the report as a `result` event, or an `error` event), for a CI system to follow'
complete -c dbctl -n "__fish_dbctl_using_subcommand control-plane" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dbctl -n "__fish_dbctl_using_subcommand render" -l target -d 'Render for this target of etc/dbctl.yml instead of each spec\'s own' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand render" -l platform -d 'Render for a default target of this platform' -r -f -a "local\t''
ssh\t''
openstack\t''
nomad\t''
kubernetes\t''
terraform\t''
pacemaker\t''"
complete -c dbctl -n "__fish_dbctl_using_subcommand render" -l out -d 'Write the artifacts under this directory instead of printing them' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand render" -l repo -d 'The GitOps repo (default: the current directory)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand render" -s o -l output -d 'Output format' -r -f -a "human\t'Text for people'
json\t'One JSON document on stdout'
markdown\t'Markdown on stdout, for a CI job\'s summary or a merge request\'s comment (progress on stderr as for people)'"
complete -c dbctl -n "__fish_dbctl_using_subcommand render" -l state-dir -d 'Where the `local` platform keeps database instances (default: /var/lib/dbctl for root, ~/.local/share/dbctl otherwise)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand render" -l identity -d 'The age identity file that decrypts connection files (default: ~/.config/dbctl/identity.txt)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand render" -l timeout -d 'Give up waiting on the platform after this many seconds: a Heat stack operation, resource groups starting, a server accepting connections after a (re)start (default: each wait\'s own; Heat 1800 s, groups 180 s, servers 30–120 s)' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand render" -l all -d 'Render every database of the repo'
complete -c dbctl -n "__fish_dbctl_using_subcommand render" -l context -d 'Print each database\'s template context (the variables templates see) and artifact steps instead of the artifacts'
complete -c dbctl -n "__fish_dbctl_using_subcommand render" -l accept-new-host-keys -d 'Trust SSH host keys not yet in `known_hosts` (a changed key is still refused)'
complete -c dbctl -n "__fish_dbctl_using_subcommand render" -s q -l quiet -d 'No progress lines on stderr'
complete -c dbctl -n "__fish_dbctl_using_subcommand render" -s v -l verbose -d 'Show the output of the commands each step runs, as it arrives'
complete -c dbctl -n "__fish_dbctl_using_subcommand render" -l events -d 'With `-o json`: stream progress as JSON Lines on stdout (`status`, `step`, `progress`, `done`, `output` events, then the report as a `result` event, or an `error` event), for a CI system to follow'
complete -c dbctl -n "__fish_dbctl_using_subcommand render" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dbctl -n "__fish_dbctl_using_subcommand completions" -l repo -d 'The GitOps repo (default: the current directory)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand completions" -s o -l output -d 'Output format' -r -f -a "human\t'Text for people'
json\t'One JSON document on stdout'
markdown\t'Markdown on stdout, for a CI job\'s summary or a merge request\'s comment (progress on stderr as for people)'"
complete -c dbctl -n "__fish_dbctl_using_subcommand completions" -l state-dir -d 'Where the `local` platform keeps database instances (default: /var/lib/dbctl for root, ~/.local/share/dbctl otherwise)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand completions" -l identity -d 'The age identity file that decrypts connection files (default: ~/.config/dbctl/identity.txt)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand completions" -l timeout -d 'Give up waiting on the platform after this many seconds: a Heat stack operation, resource groups starting, a server accepting connections after a (re)start (default: each wait\'s own; Heat 1800 s, groups 180 s, servers 30–120 s)' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand completions" -l accept-new-host-keys -d 'Trust SSH host keys not yet in `known_hosts` (a changed key is still refused)'
complete -c dbctl -n "__fish_dbctl_using_subcommand completions" -s q -l quiet -d 'No progress lines on stderr'
complete -c dbctl -n "__fish_dbctl_using_subcommand completions" -s v -l verbose -d 'Show the output of the commands each step runs, as it arrives'
complete -c dbctl -n "__fish_dbctl_using_subcommand completions" -l events -d 'With `-o json`: stream progress as JSON Lines on stdout (`status`, `step`, `progress`, `done`, `output` events, then the report as a `result` event, or an `error` event), for a CI system to follow'
complete -c dbctl -n "__fish_dbctl_using_subcommand completions" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dbctl -n "__fish_dbctl_using_subcommand man" -l out -d 'Write a page for dbctl and one for each command (`dbctl-create.1`, …) into this directory instead of printing dbctl(1)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand man" -l repo -d 'The GitOps repo (default: the current directory)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand man" -s o -l output -d 'Output format' -r -f -a "human\t'Text for people'
json\t'One JSON document on stdout'
markdown\t'Markdown on stdout, for a CI job\'s summary or a merge request\'s comment (progress on stderr as for people)'"
complete -c dbctl -n "__fish_dbctl_using_subcommand man" -l state-dir -d 'Where the `local` platform keeps database instances (default: /var/lib/dbctl for root, ~/.local/share/dbctl otherwise)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand man" -l identity -d 'The age identity file that decrypts connection files (default: ~/.config/dbctl/identity.txt)' -r -F
complete -c dbctl -n "__fish_dbctl_using_subcommand man" -l timeout -d 'Give up waiting on the platform after this many seconds: a Heat stack operation, resource groups starting, a server accepting connections after a (re)start (default: each wait\'s own; Heat 1800 s, groups 180 s, servers 30–120 s)' -r
complete -c dbctl -n "__fish_dbctl_using_subcommand man" -l accept-new-host-keys -d 'Trust SSH host keys not yet in `known_hosts` (a changed key is still refused)'
complete -c dbctl -n "__fish_dbctl_using_subcommand man" -s q -l quiet -d 'No progress lines on stderr'
complete -c dbctl -n "__fish_dbctl_using_subcommand man" -s v -l verbose -d 'Show the output of the commands each step runs, as it arrives'
complete -c dbctl -n "__fish_dbctl_using_subcommand man" -l events -d 'With `-o json`: stream progress as JSON Lines on stdout (`status`, `step`, `progress`, `done`, `output` events, then the report as a `result` event, or an `error` event), for a CI system to follow'
complete -c dbctl -n "__fish_dbctl_using_subcommand man" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dbctl -n "__fish_dbctl_using_subcommand help; and not __fish_seen_subcommand_from init create plan apply list status connection delete resize upgrade scale sql rotate-credentials backup backups restore wal-push control-plane render completions man help" -f -a "init" -d 'Scaffold a GitOps repo (git, etc/dbctl.yml, an age identity)'
complete -c dbctl -n "__fish_dbctl_using_subcommand help; and not __fish_seen_subcommand_from init create plan apply list status connection delete resize upgrade scale sql rotate-credentials backup backups restore wal-push control-plane render completions man help" -f -a "create" -d 'Create a database: write its spec, run it, commit its connection file'
complete -c dbctl -n "__fish_dbctl_using_subcommand help; and not __fish_seen_subcommand_from init create plan apply list status connection delete resize upgrade scale sql rotate-credentials backup backups restore wal-push control-plane render completions man help" -f -a "plan" -d 'Show what `apply` would change: every spec against what runs'
complete -c dbctl -n "__fish_dbctl_using_subcommand help; and not __fish_seen_subcommand_from init create plan apply list status connection delete resize upgrade scale sql rotate-credentials backup backups restore wal-push control-plane render completions man help" -f -a "apply" -d 'Converge every spec of the repo, several databases at once, and commit'
complete -c dbctl -n "__fish_dbctl_using_subcommand help; and not __fish_seen_subcommand_from init create plan apply list status connection delete resize upgrade scale sql rotate-credentials backup backups restore wal-push control-plane render completions man help" -f -a "list" -d 'List every database of the repo with its live state'
complete -c dbctl -n "__fish_dbctl_using_subcommand help; and not __fish_seen_subcommand_from init create plan apply list status connection delete resize upgrade scale sql rotate-credentials backup backups restore wal-push control-plane render completions man help" -f -a "status" -d 'Show whether a database is up, its version, port and size'
complete -c dbctl -n "__fish_dbctl_using_subcommand help; and not __fish_seen_subcommand_from init create plan apply list status connection delete resize upgrade scale sql rotate-credentials backup backups restore wal-push control-plane render completions man help" -f -a "connection" -d 'Print a database\'s connection file or URI'
complete -c dbctl -n "__fish_dbctl_using_subcommand help; and not __fish_seen_subcommand_from init create plan apply list status connection delete resize upgrade scale sql rotate-credentials backup backups restore wal-push control-plane render completions man help" -f -a "delete" -d 'Delete a database: stop it, remove its data, spec and connection file'
complete -c dbctl -n "__fish_dbctl_using_subcommand help; and not __fish_seen_subcommand_from init create plan apply list status connection delete resize upgrade scale sql rotate-credentials backup backups restore wal-push control-plane render completions man help" -f -a "resize" -d 'Grow a database\'s allotment: write the spec, apply that change, commit'
complete -c dbctl -n "__fish_dbctl_using_subcommand help; and not __fish_seen_subcommand_from init create plan apply list status connection delete resize upgrade scale sql rotate-credentials backup backups restore wal-push control-plane render completions man help" -f -a "upgrade" -d 'Move a database to another version: write the spec, apply that change, commit'
complete -c dbctl -n "__fish_dbctl_using_subcommand help; and not __fish_seen_subcommand_from init create plan apply list status connection delete resize upgrade scale sql rotate-credentials backup backups restore wal-push control-plane render completions man help" -f -a "scale" -d 'Give a database another plan (cpu and memory): write the spec, apply, commit'
complete -c dbctl -n "__fish_dbctl_using_subcommand help; and not __fish_seen_subcommand_from init create plan apply list status connection delete resize upgrade scale sql rotate-credentials backup backups restore wal-push control-plane render completions man help" -f -a "sql" -d 'Run an admin batch (SQL, Redis commands) as the application owner or `--admin`'
complete -c dbctl -n "__fish_dbctl_using_subcommand help; and not __fish_seen_subcommand_from init create plan apply list status connection delete resize upgrade scale sql rotate-credentials backup backups restore wal-push control-plane render completions man help" -f -a "rotate-credentials" -d 'New credentials without downtime: the other login gets a new password and the connection file; the previous login works until `--grace` ends or the next rotation'
complete -c dbctl -n "__fish_dbctl_using_subcommand help; and not __fish_seen_subcommand_from init create plan apply list status connection delete resize upgrade scale sql rotate-credentials backup backups restore wal-push control-plane render completions man help" -f -a "backup" -d 'Back up a database (a physical backup, compressed and encrypted) to its store'
complete -c dbctl -n "__fish_dbctl_using_subcommand help; and not __fish_seen_subcommand_from init create plan apply list status connection delete resize upgrade scale sql rotate-credentials backup backups restore wal-push control-plane render completions man help" -f -a "backups" -d 'List a database\'s backups with age, size and type'
complete -c dbctl -n "__fish_dbctl_using_subcommand help; and not __fish_seen_subcommand_from init create plan apply list status connection delete resize upgrade scale sql rotate-credentials backup backups restore wal-push control-plane render completions man help" -f -a "restore" -d 'Restore a backup: in place, into a new database (`--as`) or another target'
complete -c dbctl -n "__fish_dbctl_using_subcommand help; and not __fish_seen_subcommand_from init create plan apply list status connection delete resize upgrade scale sql rotate-credentials backup backups restore wal-push control-plane render completions man help" -f -a "wal-push" -d 'Archive one WAL file (PostgreSQL\'s `archive_command`; not for people)'
complete -c dbctl -n "__fish_dbctl_using_subcommand help; and not __fish_seen_subcommand_from init create plan apply list status connection delete resize upgrade scale sql rotate-credentials backup backups restore wal-push control-plane render completions man help" -f -a "control-plane" -d 'Render an openstack target\'s control plane: network and Consul + Nomad masters as Heat stacks, and the inventory (hosts.ini)'
complete -c dbctl -n "__fish_dbctl_using_subcommand help; and not __fish_seen_subcommand_from init create plan apply list status connection delete resize upgrade scale sql rotate-credentials backup backups restore wal-push control-plane render completions man help" -f -a "render" -d 'Print (or write) the artifacts dbctl renders for a database'
complete -c dbctl -n "__fish_dbctl_using_subcommand help; and not __fish_seen_subcommand_from init create plan apply list status connection delete resize upgrade scale sql rotate-credentials backup backups restore wal-push control-plane render completions man help" -f -a "completions" -d 'Print the shell completion script for bash, zsh, fish, elvish or powershell'
complete -c dbctl -n "__fish_dbctl_using_subcommand help; and not __fish_seen_subcommand_from init create plan apply list status connection delete resize upgrade scale sql rotate-credentials backup backups restore wal-push control-plane render completions man help" -f -a "man" -d 'Print dbctl\'s man page, or write one per command with `--out DIR`'
complete -c dbctl -n "__fish_dbctl_using_subcommand help; and not __fish_seen_subcommand_from init create plan apply list status connection delete resize upgrade scale sql rotate-credentials backup backups restore wal-push control-plane render completions man help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c dbctl -n "__fish_dbctl_using_subcommand help; and __fish_seen_subcommand_from backup" -f -a "verify" -d 'A restore drill: restore a backup into a scratch database, check it, remove it, and record the result and the recovery time in the backup\'s manifest'
