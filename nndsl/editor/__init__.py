"""Editor support: a Pygments lexer and a TextMate grammar, from one token table."""
