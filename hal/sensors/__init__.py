"""I2C sensors: cabinet climate (SHT3x), power / UPS monitor (INA219), real-time clock (DS3231)."""
