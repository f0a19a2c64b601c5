#!/bin/sh
# Custom plugin for node-problem-detector: is the conntrack table nearly full?
# Exit 0 = OK, 1 = NONOK (problem found), 2 = UNKNOWN. The first line of output is the message.
readonly OK=0 NONOK=1 UNKNOWN=2
max_file=/proc/sys/net/netfilter/nf_conntrack_max
count_file=/proc/sys/net/netfilter/nf_conntrack_count
if [ ! -r "$max_file" ] || [ ! -r "$count_file" ]; then
  echo "conntrack counters not readable"
  exit $UNKNOWN
fi
max=$(cat "$max_file")
count=$(cat "$count_file")
if [ "$max" -gt 0 ] && [ $((count * 100 / max)) -ge 90 ]; then
  echo "conntrack table is $((count * 100 / max))% full ($count of $max)"
  exit $NONOK
fi
echo "conntrack table below 90%"
exit $OK
