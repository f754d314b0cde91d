#!/bin/bash
cd /app && tac data.txt > answer.txt
