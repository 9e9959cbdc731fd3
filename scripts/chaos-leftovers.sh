#!/usr/bin/env bash
# Fails when the chaos tests (tests/chaos/, momoko-testpg's NetnsServer and NetnsCluster)
# left anything of theirs on this machine: a network namespace named momoko-chaos-*, a veth
# link named mc<pid>x<n><r|s|p|q> in this namespace, or a postgres process running in a
# network namespace other than this one (the chaos servers are the only ones started in
# one; nftables rules and tc qdiscs live inside the namespaces and go with them). Run at the
# end of `make chaos` and `make test`, when no chaos test is running.
set -u
left=0
if ns=$(ip netns list 2>/dev/null | awk '{print $1}' | grep '^momoko-chaos-'); then
  echo "chaos: network namespaces left behind: $ns" >&2; left=1
fi
if links=$(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' | grep -E '^mc[0-9]+x[0-9]+[rspq]$'); then
  echo "chaos: links left behind: $links" >&2; left=1
fi
root_ns=$(readlink /proc/self/ns/net)
for p in /proc/[0-9]*; do
  [ "$(cat "$p/comm" 2>/dev/null)" = postgres ] || continue
  ns=$(readlink "$p/ns/net" 2>/dev/null) || continue
  if [ "$ns" != "$root_ns" ]; then
    echo "chaos: postgres process ${p#/proc/} left running in $ns" >&2; left=1
  fi
done
[ $left = 0 ] && echo "==> chaos: nothing left behind (namespaces, links, rules, servers)"
exit $left
