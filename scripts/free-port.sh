#!/usr/bin/env bash
# scripts/free-port.sh - print N (default 1) distinct TCP ports that are
# free on 127.0.0.1, one a line, for test fixtures whose server cannot
# bind port 0 itself or must keep its port across a restart.
#
#   free-port.sh [N]
#
# The kernel picks each port (bind to port 0); all N sockets stay open
# until the last is chosen, so the ports differ from each other. Two
# build trees probing at once get different ports. A port is free when
# printed, not reserved: the caller binds it at once and, if that fails,
# probes again (scripts/nats-server.sh and rabbitmq.sh do).
set -euo pipefail
n=${1:-1}
case "$n" in ''|*[!0-9]*) echo "free-port.sh: N must be a number, got '$n'" >&2; exit 2 ;; esac
[ "$n" -ge 1 ] && [ "$n" -le 64 ] || { echo "free-port.sh: N must be 1..64" >&2; exit 2; }
exec perl -MIO::Socket::INET -e '
  my @s;
  for (1 .. $ARGV[0]) {
    my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => 0,
                                  Proto => "tcp", Listen => 1, ReuseAddr => 0)
      or die "free-port.sh: cannot bind 127.0.0.1:0: $!\n";
    push @s, $s;
    print $s->sockport, "\n";
  }' "$n"
