# vipd's ESP state in a host, for scenario scripts. Sourced after topology.sh.
#   sas HOST SRC DST     our SAs (reqid $REQID) from SRC to DST: "spi aead-line" each
#   spis HOST SRC DST    their SPIs
#   count CMD...         the lines CMD prints
#   xstat HOST FIELD     a counter of the host's /proc/net/xfrm_stat
#   esp HOST ARGS...     vip-esp in HOST: a pair keyed by hand, as vipd keys it
#   key                  a random AEAD key with its salt (36 bytes), in base64
REQID=0x56495000
sas() {
  on "$1" ip xfrm state list src "$2" dst "$3" proto esp | awk -v r=$((REQID)) '
    /^src/ { spi = "" } / spi / { for (i = 1; i <= NF; i++) if ($i == "spi") spi = $(i + 1);
      ours = ($0 ~ "reqid " r " ") } /aead/ && ours { print spi, $0 }'
}
spis() { sas "$@" | cut -d' ' -f1; }
count() { "$@" | grep -c .; }
xstat() { on "$1" awk -v f="$2" '$1 == f { print $2 }' /proc/net/xfrm_stat; }
esp() { local host=$1; shift; on "$host" vip-esp "$@"; }
key() { head -c 36 /dev/urandom | base64 -w0; }
