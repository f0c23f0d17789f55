#!/bin/sh
# Reads one post_receive event (JSON, one line) on stdin and answers
# {"tags":[TAG]} when the decoded Subject contains WORD, else {}.
set -eu
event=$(cat)
field() { printf '%s' "$event" | sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p"; }
subject=$(printf '%s' "$event" | sed -n 's/.*"name":"Subject","value":"\([^"]*\)".*/\1/p')
word=$(field word)
tag=$(field tag)
if [ -n "$word" ] && printf '%s' "$subject" | grep -qi -- "$word"; then
  printf '{"tags":["%s"],"log":"subject matched %s"}\n' "$tag" "$word"
else
  printf '{}\n'
fi
