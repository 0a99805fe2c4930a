/* luastr.h — writes any byte string into generated Lua source so that LuaJIT reads back exactly
 * those bytes and nothing else: `sluice import` and `sluice new` put database and command-line
 * text into Lua files with it, where a stray line break or bracket would otherwise become code. */
#ifndef SLUICE_LUASTR_H
#define SLUICE_LUASTR_H

#include <stddef.h>

#include "buf.h"

/* Appends s[0..len) to b as a double-quoted Lua string: `"` and `\` are escaped, newline, CR
 * and tab as \n, \r, \t, every other byte below 0x20 and 0x7f as a three-digit \ddd; bytes of
 * 0x80 and above are copied as they are. The literal never holds a line break. */
void luastr_quote(struct buf *b, const char *s, size_t len);

/* Appends s[0..len) to b as a Lua string literal that reads well: a long bracket [==[...]==]
 * whose level is closed nowhere in the text (nor by the text's end followed by the closer), when
 * the text has no control byte other than newline and tab; when it holds a newline the text
 * starts on the line after the opener (the lexer drops that first line break). Any other text
 * is written with luastr_quote. Either way the literal loads as exactly s[0..len). */
void luastr_text(struct buf *b, const char *s, size_t len);

/* Appends s[0..len) to b with the escapes of luastr_quote except that `"` stays as it is: the
 * result holds no line break (no LF or CR), so it is safe anywhere on a `-- ` comment line
 * after the space (never right after the two dashes, where `[[` would open a long comment). */
void luastr_escape(struct buf *b, const char *s, size_t len);

/* Appends one whole comment line: "-- ", s[0..len) as luastr_escape writes it, "\n". */
void luastr_comment(struct buf *b, const char *s, size_t len);

#endif
