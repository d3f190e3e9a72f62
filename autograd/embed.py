#!/usr/bin/env python3
"""Embeds a text file in C as a NUL-terminated char array: embed.py IN OUT SYMBOL.

The bytes are written as numbers, not a string literal, because ISO C only
promises string literals of 4095 characters (-Woverlength-strings)."""
import sys

src, out, symbol = sys.argv[1:4]
data = open(src, 'rb').read()
if b'\0' in data:
    sys.exit(f'embed.py: {src} holds a NUL byte')
rows = [', '.join(str(b) for b in data[i:i + 20]) for i in range(0, len(data), 20)]
with open(out, 'w') as f:
    f.write(f'/* Generated from {src.split("/")[-1]} by embed.py: edit that file instead. */\n')
    f.write(f'extern const char {symbol}[];\n')
    f.write(f'const char {symbol}[] = {{\n')
    for row in rows:
        f.write(f'    {row},\n')
    f.write('    0\n};\n')
